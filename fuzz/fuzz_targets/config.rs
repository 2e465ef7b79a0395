//! The configuration loader and validator on any text: parse, validate, and compile what
//! validates (the routers, TLS settings and target groups are built from it).
//!
//! Holds: nothing panics; every error's line is a line of the file.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use seawall::config::{compile, validate, Environment, Source};
use seawall::secrets::Secrets;
use seawall::tls::{self_signed, LoadedCert};

static SECRETS: LazyLock<Secrets> = LazyLock::new(Secrets::generate);
/// Stands in for every certificate: reading files would let the fuzzer name a device that never
/// ends, and generating one per new set of names would grow the process's cache without end.
static CERT: LazyLock<LoadedCert> = LazyLock::new(|| {
    self_signed(&["fuzz.test".to_string()])
        .expect("a certificate for one plain name")
        .loaded
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let src = Source::new("fuzz.toml", "/nonexistent", text.to_string());
    let lines = text.lines().count().max(1) + 1;
    let check = |errs: &seawall::config::ConfigErrors| {
        assert!(!errs.0.is_empty(), "a failed load says why");
        for e in &errs.0 {
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
            let _ = e.to_string();
        }
    };
    let raw = match src.parse() {
        Ok(raw) => raw,
        Err(errs) => return check(&errs),
    };
    // No variables: `env:` secrets are then reported missing, which is a path worth taking too.
    let env = Environment::new("/usr/local/bin/seawall");
    let cfg = match validate::validate(&src, raw, &env) {
        Ok(cfg) => cfg,
        Err(errs) => return check(&errs),
    };
    let certs = vec![CERT.clone(); cfg.certificates.len()];
    // Trust stores are files too: every listener goes without one (no client certificates).
    let client_auth: Vec<_> = cfg.listeners.iter().map(|_| None).collect();
    if let Err(errs) = compile::compile(&src, &cfg, &certs, &client_auth, &SECRETS) {
        check(&errs);
    }
});
