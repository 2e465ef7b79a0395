//! Stateless session tickets (TLS 1.3 NewSessionTicket, TLS 1.2 RFC 5077) sealed with keys the
//! process owns rather than each `ServerConfig`: every listener shares them, a reload keeps them,
//! and a binary upgrade hands them to the next process, so a client resumes across all three.
//!
//! A ticket is `key id (16) ‖ nonce (12) ‖ AES-256-GCM-SIV(session state) ‖ tag (16)`, with the
//! listener's name as associated data. GCM-SIV because the nonces are random and two processes
//! seal with the same key during an upgrade: a repeated nonce under GCM-SIV reveals only that two
//! tickets are equal, where under GCM it would reveal the authentication key.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM_SIV, NONCE_LEN};
use rustls::server::ProducesTickets;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// How long a key seals new tickets, in seconds: rustls's own `Ticketer` figure (6 hours). Whoever
/// learns a ticket key can decrypt the resumption secret of every ticket it sealed, so keys must
/// not live long; but a key retired too soon turns clients' resumptions back into full handshakes.
/// A retired key is still accepted for one more period, so a ticket lives at most 12 hours, which
/// is also the lifetime clients are told.
pub const ROTATION_SECS: u64 = 6 * 60 * 60;

const ID_LEN: usize = 16;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const OVERHEAD: usize = ID_LEN + NONCE_LEN + TAG_LEN;

/// Longer tickets are refused before any decryption is tried. Seawall's session state (secrets,
/// SNI, ALPN, no client certificates) is a few hundred bytes; the bound only keeps a client from
/// having kilobytes decrypted for nothing. It is fixed rather than learnt from the tickets sealed
/// so far, because a process fresh from an upgrade has sealed none and must accept its
/// predecessor's.
const MAX_TICKET: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    #[error("the system's random source failed")]
    Random,
    #[error("a ticket key was refused by the cipher")]
    BadKey,
}

/// One ticket key: its public id, which tickets carry so that decryption picks the right key, and
/// the secret itself, kept in bytes as well so that it can be handed to the next process.
struct Key {
    id: [u8; ID_LEN],
    secret: Secret,
    cipher: RandomizedNonceKey,
}

struct Secret([u8; KEY_LEN]);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Key {
    fn generate() -> Result<Key, TicketKeyError> {
        let mut id = [0u8; ID_LEN];
        let mut secret = Secret([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(&mut id).map_err(|_| TicketKeyError::Random)?;
        aws_lc_rs::rand::fill(&mut secret.0).map_err(|_| TicketKeyError::Random)?;
        Key::new(id, secret)
    }

    fn new(id: [u8; ID_LEN], secret: Secret) -> Result<Key, TicketKeyError> {
        let cipher = RandomizedNonceKey::new(&AES_256_GCM_SIV, &secret.0)
            .map_err(|_| TicketKeyError::BadKey)?;
        Ok(Key { id, secret, cipher })
    }

    fn seal(&self, plain: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let mut body = plain.to_vec();
        let nonce = self
            .cipher
            .seal_in_place_append_tag(Aad::from(context), &mut body)
            .ok()?;
        let mut ticket = Vec::with_capacity(OVERHEAD + plain.len());
        ticket.extend_from_slice(&self.id);
        ticket.extend_from_slice(nonce.as_ref());
        ticket.extend_from_slice(&body);
        Some(ticket)
    }

    /// `ticket` has been checked to be at least [`OVERHEAD`] long and to carry this key's id.
    fn open(&self, ticket: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let (nonce, sealed) = ticket[ID_LEN..].split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain_len = self
            .cipher
            .open_in_place(nonce, Aad::from(context), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        Some(body)
    }
}

/// The keys in force: the one that seals, the one before it, still accepted, and when the next
/// rotation is due. Replaced whole at a rotation, so a handshake reads it without a lock.
struct Ring {
    current: Arc<Key>,
    previous: Option<Arc<Key>>,
    /// Unix seconds. `current` seals until then and is accepted one period longer; `previous`
    /// is accepted until then.
    rotates_at: u64,
}

/// The process's ticket keys, shared by every listener (each through [`TicketKeys::for_listener`]).
pub struct TicketKeys {
    ring: ArcSwap<Ring>,
    /// Held only by the handshake that rotates, so that two never make a key each.
    rotating: Mutex<()>,
}

impl TicketKeys {
    /// A fresh key, the first period starting now.
    pub fn generate() -> Result<TicketKeys, TicketKeyError> {
        Ok(Self::with_ring(Ring {
            current: Arc::new(Key::generate()?),
            previous: None,
            rotates_at: unix_now().saturating_add(ROTATION_SECS),
        }))
    }

    fn with_ring(ring: Ring) -> TicketKeys {
        TicketKeys {
            ring: ArcSwap::from_pointee(ring),
            rotating: Mutex::new(()),
        }
    }

    /// The keys with their schedule, for the process that replaces this one.
    pub fn export(&self) -> TicketKeysExport {
        let ring = self.ring.load();
        let saved = |k: &Key| SavedKey {
            id: k.id,
            secret: k.secret.0,
        };
        TicketKeysExport {
            current: saved(&ring.current),
            previous: ring.previous.as_deref().map(saved),
            rotates_at: ring.rotates_at,
        }
    }

    /// The keys a previous process exported, whose schedule carries on here.
    pub fn import(saved: &TicketKeysExport) -> Result<TicketKeys, TicketKeyError> {
        let key = |k: &SavedKey| Key::new(k.id, Secret(k.secret)).map(Arc::new);
        // A rotation further off than one period would keep a key beyond its time (a clock set
        // back, or a build with a longer period); it comes at the latest one period from now.
        let latest = unix_now().saturating_add(ROTATION_SECS);
        Ok(Self::with_ring(Ring {
            current: key(&saved.current)?,
            previous: saved.previous.as_ref().map(key).transpose()?,
            rotates_at: saved.rotates_at.min(latest),
        }))
    }

    /// The tickets of one listener: these keys, with tickets bound to the listener's name.
    /// rustls resumes a session wherever its ticket decrypts; bound this way, a ticket issued by
    /// one listener (one set of certificates) is not accepted by another, as rustls's
    /// documentation on sharing a ticketer between configurations asks.
    pub fn for_listener(self: &Arc<Self>, listener: &str) -> Arc<dyn ProducesTickets> {
        Arc::new(ListenerTickets {
            keys: self.clone(),
            context: listener.as_bytes().into(),
        })
    }

    /// The ring in force at `now`, rotated first if it is due.
    fn ring_at(&self, now: u64) -> arc_swap::Guard<Arc<Ring>> {
        let ring = self.ring.load();
        if now < ring.rotates_at {
            return ring;
        }
        drop(ring);
        self.rotate(now);
        self.ring.load()
    }

    /// Done by the first handshake after a period ends: once per period, the lock held for as
    /// long as it takes to make a key (microseconds). Should making one fail, the old ring stays,
    /// and [`Ring::seal`] and [`Ring::open`] keep its keys to their times.
    fn rotate(&self, now: u64) {
        let _only_one = self.rotating.lock().unwrap_or_else(|e| e.into_inner());
        let ring = self.ring.load_full();
        if now < ring.rotates_at {
            return;
        }
        let Ok(fresh) = Key::generate() else {
            return;
        };
        // Rotation happens at a handshake, so an idle process may come to it late: the retired
        // key is accepted until the end of the period after its own, on the schedule, not one
        // period from now. More than a period late, it is past even that.
        let next = ring.rotates_at.saturating_add(ROTATION_SECS);
        let ring = if now < next {
            Ring {
                current: Arc::new(fresh),
                previous: Some(ring.current.clone()),
                rotates_at: next,
            }
        } else {
            Ring {
                current: Arc::new(fresh),
                previous: None,
                rotates_at: now.saturating_add(ROTATION_SECS),
            }
        };
        self.ring.store(Arc::new(ring));
    }

    fn seal(&self, plain: &[u8], context: &[u8], now: u64) -> Option<Vec<u8>> {
        self.ring_at(now).seal(plain, context, now)
    }

    fn open(&self, ticket: &[u8], context: &[u8], now: u64) -> Option<Vec<u8>> {
        if !(OVERHEAD..=MAX_TICKET).contains(&ticket.len()) {
            return None;
        }
        self.ring_at(now).open(ticket, context, now)
    }
}

impl Ring {
    /// Checks the times itself rather than trust that a rotation happened: should making a key
    /// fail, this ring stays in force past its time.
    fn seal(&self, plain: &[u8], context: &[u8], now: u64) -> Option<Vec<u8>> {
        if now >= self.rotates_at {
            return None;
        }
        self.current.seal(plain, context)
    }

    /// `ticket` is at least [`OVERHEAD`] long.
    fn open(&self, ticket: &[u8], context: &[u8], now: u64) -> Option<Vec<u8>> {
        let id = &ticket[..ID_LEN];
        let key = if self.current.id == id {
            (now < self.rotates_at.saturating_add(ROTATION_SECS)).then_some(&self.current)
        } else {
            self.previous
                .as_ref()
                .filter(|p| p.id == id && now < self.rotates_at)
        }?;
        key.open(ticket, context)
    }
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKeys(<redacted>)")
    }
}

/// [`TicketKeys`] as one listener's `ServerConfig` uses them.
struct ListenerTickets {
    keys: Arc<TicketKeys>,
    /// The listener's name, the associated data of its tickets.
    context: Box<[u8]>,
}

impl ProducesTickets for ListenerTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        (2 * ROTATION_SECS) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.seal(plain, &self.context, unix_now())
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.keys.open(ticket, &self.context, unix_now())
    }
}

impl std::fmt::Debug for ListenerTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTickets")
            .field("listener", &String::from_utf8_lossy(&self.context))
            .finish_non_exhaustive()
    }
}

/// The ticket keys as they travel to the next process in a binary upgrade. Unix times, which both
/// processes read off the same clock.
#[derive(Serialize, Deserialize)]
pub struct TicketKeysExport {
    current: SavedKey,
    previous: Option<SavedKey>,
    rotates_at: u64,
}

#[derive(Serialize, Deserialize)]
struct SavedKey {
    id: [u8; ID_LEN],
    secret: [u8; KEY_LEN],
}

impl Drop for SavedKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for TicketKeysExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKeysExport(<redacted>)")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: &[u8] = b"web";

    fn keys_at(start: u64) -> TicketKeys {
        TicketKeys::with_ring(Ring {
            current: Arc::new(Key::generate().unwrap()),
            previous: None,
            rotates_at: start + ROTATION_SECS,
        })
    }

    #[test]
    fn a_ticket_opens_to_what_was_sealed() {
        let k = keys_at(1000);
        let t = k.seal(b"session state", CTX, 1000).unwrap();
        assert_eq!(t.len(), OVERHEAD + b"session state".len());
        assert_eq!(k.open(&t, CTX, 1001).unwrap(), b"session state");
        // Random nonces: the same state seals differently each time.
        assert_ne!(k.seal(b"session state", CTX, 1000).unwrap(), t);
    }

    #[test]
    fn the_previous_key_is_accepted_and_the_one_before_it_is_not() {
        let start = 1000;
        let k = keys_at(start);
        let first = k.seal(b"one", CTX, start).unwrap();
        // One rotation: `first`'s key is the previous one.
        let p1 = start + ROTATION_SECS;
        let second = k.seal(b"two", CTX, p1).unwrap();
        assert_ne!(first[..ID_LEN], second[..ID_LEN], "a new key seals");
        assert_eq!(k.open(&first, CTX, p1 + 1).unwrap(), b"one");
        assert_eq!(k.open(&second, CTX, p1 + 1).unwrap(), b"two");
        // Two rotations: `first`'s key is gone.
        let p2 = start + 2 * ROTATION_SECS;
        let third = k.seal(b"three", CTX, p2).unwrap();
        assert_eq!(k.open(&first, CTX, p2 + 1), None);
        assert_eq!(k.open(&second, CTX, p2 + 1).unwrap(), b"two");
        assert_eq!(k.open(&third, CTX, p2 + 1).unwrap(), b"three");
    }

    #[test]
    fn a_late_rotation_keeps_to_the_schedule() {
        let start = 1000;
        let k = keys_at(start);
        let first = k.seal(b"one", CTX, start).unwrap();
        // An idle process rotates at its first handshake, 5 hours late: `first`'s key is accepted
        // only until the end of the period after its own, one hour from now.
        let late = start + ROTATION_SECS + 5 * 3600;
        assert_eq!(k.open(&first, CTX, late).unwrap(), b"one");
        assert_eq!(k.open(&first, CTX, start + 2 * ROTATION_SECS), None);

        // Idle for more than a whole period: nothing sealed before is accepted.
        let k = keys_at(start);
        let first = k.seal(b"one", CTX, start).unwrap();
        assert_eq!(k.open(&first, CTX, start + 2 * ROTATION_SECS + 1), None);
    }

    #[test]
    fn a_ring_left_in_force_past_its_time_keeps_its_keys_to_their_times() {
        // What stays in force when making a new key failed.
        let (old, current) = (Key::generate().unwrap(), Key::generate().unwrap());
        let fresh = Ring {
            current: Arc::new(old),
            previous: None,
            rotates_at: 1000 + ROTATION_SECS,
        };
        let by_old = fresh.seal(b"one", CTX, 1000).unwrap();
        let ring = Ring {
            current: Arc::new(current),
            previous: fresh.current.clone().into(),
            rotates_at: 1000 + ROTATION_SECS,
        };
        let by_current = ring.seal(b"two", CTX, 1000).unwrap();
        let due = ring.rotates_at;
        assert_eq!(
            ring.seal(b"three", CTX, due),
            None,
            "no sealing past its time"
        );
        assert_eq!(ring.open(&by_old, CTX, due - 1).unwrap(), b"one");
        assert_eq!(ring.open(&by_old, CTX, due), None);
        assert_eq!(ring.open(&by_current, CTX, due).unwrap(), b"two");
        assert_eq!(ring.open(&by_current, CTX, due + ROTATION_SECS), None);
    }

    #[test]
    fn tampered_foreign_or_misbound_tickets_are_refused() {
        let k = keys_at(1000);
        let t = k.seal(b"session state", CTX, 1000).unwrap();
        for i in [0, ID_LEN, ID_LEN + NONCE_LEN, t.len() - 1] {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert_eq!(k.open(&bad, CTX, 1000), None, "byte {i} flipped");
        }
        assert_eq!(k.open(&t[..t.len() - 1], CTX, 1000), None, "truncated");
        assert_eq!(k.open(&[], CTX, 1000), None);
        assert_eq!(k.open(&[7u8; 100], CTX, 1000), None);
        assert_eq!(k.open(&vec![0u8; MAX_TICKET + 1], CTX, 1000), None);
        // Another process's keys, and another listener.
        assert_eq!(keys_at(1000).open(&t, CTX, 1000), None);
        assert_eq!(k.open(&t, b"api", 1000), None);
    }

    #[test]
    fn exported_keys_open_the_tickets_and_keep_the_schedule() {
        let now = unix_now();
        let k = Arc::new(TicketKeys::generate().unwrap());
        let t = k.seal(b"state", CTX, now).unwrap();
        let json = serde_json::to_vec(&k.export()).unwrap();
        let saved: TicketKeysExport = serde_json::from_slice(&json).unwrap();
        let imported = TicketKeys::import(&saved).unwrap();
        assert_eq!(imported.open(&t, CTX, now).unwrap(), b"state");
        let theirs = imported.seal(b"back", CTX, now).unwrap();
        assert_eq!(k.open(&theirs, CTX, now).unwrap(), b"back");
        assert_eq!(
            imported.ring.load().rotates_at,
            k.ring.load().rotates_at,
            "the rotation comes when it would have"
        );
        assert_eq!(format!("{saved:?}"), "TicketKeysExport(<redacted>)");
        assert_eq!(format!("{imported:?}"), "TicketKeys(<redacted>)");
    }

    #[test]
    fn an_imported_rotation_comes_at_most_one_period_from_now() {
        let k = TicketKeys::generate().unwrap();
        let mut saved = k.export();
        saved.rotates_at = u64::MAX;
        let imported = TicketKeys::import(&saved).unwrap();
        assert!(imported.ring.load().rotates_at <= unix_now() + ROTATION_SECS);
    }
}
