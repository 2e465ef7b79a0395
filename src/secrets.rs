//! Keys that clients carry back to the process that made them: the key of stickiness cookies when
//! the configuration sets none (`[runtime] cookie_key`). A process makes them up at start, or
//! receives them from the process it replaces in a binary upgrade, so that what the old process
//! issued stays valid after it.

/// The process's own keys, alive as long as the process and the same across reloads.
pub struct Secrets {
    cookie_key: [u8; 32],
}

impl Secrets {
    /// Fresh random keys.
    pub fn generate() -> Self {
        let mut cookie_key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut cookie_key).expect("the system's random source works");
        Secrets { cookie_key }
    }

    /// The key of stickiness cookies when the configuration sets none.
    pub fn cookie_key(&self) -> &[u8; 32] {
        &self.cookie_key
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}
