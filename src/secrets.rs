//! Keys that clients carry back to the process that made them: the key of stickiness cookies when
//! the configuration sets none (`[runtime] cookie_key`), and the TLS session-ticket keys. A process
//! makes them up at start, or receives them from the process it replaces in a binary upgrade, so
//! that what the old process issued stays valid after it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::tls::{TicketKeyError, TicketKeys, TicketKeysExport};

/// The process's own keys, alive as long as the process and the same across reloads.
pub struct Secrets {
    cookie_key: [u8; 32],
    /// Shared by every listener's `ServerConfig`, those of later reloads included.
    tickets: Arc<TicketKeys>,
}

impl Secrets {
    /// Fresh random keys.
    pub fn generate() -> Self {
        let mut cookie_key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut cookie_key).expect("the system's random source works");
        Secrets {
            cookie_key,
            tickets: Arc::new(TicketKeys::generate().expect("the system's random source works")),
        }
    }

    /// The key of stickiness cookies when the configuration sets none.
    pub fn cookie_key(&self) -> &[u8; 32] {
        &self.cookie_key
    }

    /// The session-ticket keys; listeners take them through [`TicketKeys::for_listener`].
    pub fn tickets(&self) -> &Arc<TicketKeys> {
        &self.tickets
    }

    /// Every key with its schedule, for the process that replaces this one.
    pub fn export(&self) -> ExportedSecrets {
        ExportedSecrets {
            cookie_key: self.cookie_key,
            tickets: self.tickets.export(),
        }
    }

    /// The keys the replaced process exported.
    pub fn import(saved: &ExportedSecrets) -> Result<Self, TicketKeyError> {
        Ok(Secrets {
            cookie_key: saved.cookie_key,
            tickets: Arc::new(TicketKeys::import(&saved.tickets)?),
        })
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.cookie_key.zeroize();
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// [`Secrets`] as they travel over the upgrade socket.
#[derive(Serialize, Deserialize)]
pub struct ExportedSecrets {
    cookie_key: [u8; 32],
    tickets: TicketKeysExport,
}

impl Drop for ExportedSecrets {
    fn drop(&mut self) {
        self.cookie_key.zeroize();
    }
}

impl std::fmt::Debug for ExportedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportedSecrets(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_secrets_are_the_exported_ones() {
        let s = Secrets::generate();
        let json = serde_json::to_vec(&s.export()).unwrap();
        let saved: ExportedSecrets = serde_json::from_slice(&json).unwrap();
        let imported = Secrets::import(&saved).unwrap();
        assert_eq!(imported.cookie_key(), s.cookie_key());
        assert_ne!(Secrets::generate().cookie_key(), s.cookie_key());
        assert_eq!(
            format!("{imported:?} {saved:?}"),
            "Secrets(<redacted>) ExportedSecrets(<redacted>)"
        );
    }
}
