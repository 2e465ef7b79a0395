# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts in this folder (sourced, not run).

# need COMMAND PACKAGE: installs PACKAGE from Debian when COMMAND is missing.
need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# seawall_base ADMIN_PORT: the admin server and one pinned worker, as every bench runs seawall
# (WORKERS=N for N, to measure what the multi-worker data plane costs).
seawall_base() {
    cat <<EOC
[admin]
bind = "127.0.0.1:$1"

[runtime]
workers = ${WORKERS:-1}
EOC
}

# seawall_certificate NAME CERT KEY: a [[certificates]] entry.
seawall_certificate() {
    cat <<EOC

[[certificates]]
name = "$1"
cert = "$2"
key = "$3"
EOC
}

# seawall_listener NAME PORT CERTIFICATE: an HTTPS listener (h2 and http/1.1) that forwards to
# the target group "backend" and answers /fixed itself, as the peers are set up to.
seawall_listener() {
    cat <<EOC

[[listeners]]
name = "$1"
bind = "127.0.0.1:$2"
protocol = "https"
certificates = ["$3"]
alpn = ["h2", "http/1.1"]
default_action = { forward = "backend" }
  [[listeners.rules]]
  priority = 1
  match = { path = ["/fixed"] }
  action = { fixed_response = { status = 200, content_type = "text/plain", body = "ok\n" } }
EOC
}

# median V...: the middle value (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# make_workdir: a temporary folder in $work, readable by nginx's unprivileged workers; on exit
# every process whose pid the script added to $pids is stopped and the folder removed.
make_workdir() {
    work=$(mktemp -d)
    chmod 755 "$work"
    pids=()
    trap cleanup_workdir EXIT
}
cleanup_workdir() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
