# seawall in a container: the dist build, optimised with a profile of its own load
# (benches/pgo.sh), on debian:bookworm-slim, running as a non-root user. Build and run:
#
#     docker build -t seawall .
#     docker run --rm -p 8443:8443 -p 8080:8080 -p 127.0.0.1:9901:9901 seawall
#     curl -k https://localhost:8443/
#
# The default command runs /etc/seawall/container.toml (listeners on 0.0.0.0, a self-signed
# certificate generated at start, admin on 0.0.0.0:9901). Mount your own config to use it:
#
#     docker run --rm -v "$PWD/my.toml:/etc/seawall/my.toml:ro" -p 8443:8443 seawall \
#         run --config /etc/seawall/my.toml
#
# The profile-guided build (PGO=1, the default) runs a training load on loopback between an
# instrumented build and the final one: about three times as long as a plain build, for about a
# quarter fewer instructions per proxied request (see the README's "Docker"). For a quick
# image, `docker build --build-arg PGO=0 -t seawall .` ships the plain dist build.

# ---- build ------------------------------------------------------------------------------------
FROM rust:bookworm AS build
ARG PGO=1
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them: a stub crate with the real
# manifest and lock file. The manifest names benches/{balancer,reload,tls,router,proxy}.rs as
# [[bench]] targets, and cargo refuses a manifest whose named targets are missing, so stubs of
# them stay for both builds (the image never builds benches). With PGO they are built as
# benches/pgo.sh builds its instrumented binary (the same flags and target folder), so that it
# finds them built; the final, profile-guided build compiles them again, as it must.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/balancer.rs \
    && echo 'fn main() {}' > benches/reload.rs \
    && echo 'fn main() {}' > benches/tls.rs \
    && echo 'fn main() {}' > benches/router.rs \
    && echo 'fn main() {}' > benches/proxy.rs \
    && if [ "$PGO" = 1 ]; then \
        RUSTFLAGS=-Cprofile-generate=/src/target/pgo/raw CARGO_TARGET_DIR=/src/target/pgo/gen \
            cargo build --profile dist --locked --bin seawall; \
    else \
        cargo build --profile dist --locked --bin seawall; \
    fi \
    && rm -rf src
COPY src ./src
COPY benches/pgo.sh benches/common.sh ./benches/
# Make sure cargo sees the real sources as newer than the stub's build. pgo.sh fetches
# llvm-profdata with rustup (the llvm-tools component) and writes the binary to /src/seawall.
RUN touch src/main.rs src/lib.rs \
    && if [ "$PGO" = 1 ]; then \
        bash benches/pgo.sh /src/seawall; \
    else \
        cargo build --profile dist --locked --bin seawall && cp target/dist/seawall /src/seawall; \
    fi \
    && /src/seawall --version

# ---- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: target groups with protocol = "https"; curl: the HEALTHCHECK below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 seawall \
    && useradd --system --uid 10001 --gid seawall --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin seawall
COPY --from=build /src/seawall /usr/local/bin/seawall
# The example configurations; container.toml is the one that binds 0.0.0.0. (The others refer to
# ../certs, a test certificate that is deliberately not shipped in the image.)
COPY config/ /etc/seawall/
# Fail the build, not the first start, if the default configuration is broken.
RUN seawall check /etc/seawall/container.toml
USER seawall:seawall
# HTTPS, HTTP (redirects to HTTPS), admin (keep this one private).
EXPOSE 8443 8080 9901
# The admin server answers 503 while draining, so an orchestrator stops sending traffic.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9901/healthz || exit 1
# seawall drains in-flight requests on SIGTERM (docker stop), then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["seawall"]
CMD ["run", "--config", "/etc/seawall/container.toml"]
