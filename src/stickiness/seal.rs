//! Sealed stickiness cookies: AES-256-GCM under a key derived (HKDF-SHA256) from a secret, a
//! random 96-bit nonce per cookie, the cookie's kind as associated data. A client can read
//! nothing of a cookie and change nothing in it; every seawall instance given the same secret
//! reads the others' cookies.
//!
//! A cookie's value is `base64url(nonce ‖ ciphertext ‖ tag)`, unpadded (every character is
//! valid in a cookie value). The plaintext is:
//!
//! ```text
//! version (1) ‖ kind (1) ‖ expiry, unix seconds (8, big endian) ‖ group name length (2) ‖
//! group name ‖ for target cookies: family (1: 4 or 6) ‖ IP (4 or 16) ‖ port (2)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The layout of the plaintext; a cookie of another version is ignored.
const VERSION: u8 = 1;
/// Fixed for seawall's cookies: the secret's randomness is what counts, and instances must
/// agree on it to read each other's cookies.
const HKDF_SALT: &[u8] = b"seawall stickiness cookies";
const HKDF_INFO: &[u8] = b"aes-256-gcm v1";
const TAG_LEN: usize = 16;
/// Browsers keep at most 4096 bytes per cookie; a longer value is not one of ours, and is not
/// decoded at all.
const MAX_VALUE_LEN: usize = 4096;

/// What a cookie sticks to. The kind is the AEAD's associated data as well as a byte of the
/// plaintext, so a cookie of one kind never opens as another (a group cookie replayed as a
/// target cookie, say). The CORS twin of a cookie (`AWSALBCORS`) carries the same value as the
/// cookie it doubles, so both open under the one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AWSALBTG`: a target group of a weighted forward.
    Group = 1,
    /// `AWSALB`: a target, by duration (lb_cookie).
    Target = 2,
    /// `AWSALBAPP-0`: a target, following the application's cookie (app_cookie).
    App = 3,
}

impl Kind {
    fn aad(self) -> &'static [u8] {
        match self {
            Kind::Group => b"AWSALBTG",
            Kind::Target => b"AWSALB",
            Kind::App => b"AWSALBAPP-0",
        }
    }

    fn has_target(self) -> bool {
        self != Kind::Group
    }
}

/// The keyed sealer of a snapshot's cookies. Deriving it costs an HKDF; sealing and opening are
/// one AES-GCM pass over a few dozen bytes.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

/// A cookie's content, to be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket<'a> {
    pub kind: Kind,
    /// Unix seconds after which the cookie is ignored, whatever the browser does with it.
    pub expires: u64,
    pub group: &'a str,
    /// The target, for [`Kind::Target`] and [`Kind::App`]; ignored for [`Kind::Group`].
    pub target: Option<SocketAddr>,
}

/// A cookie that opened: authentic, of the kind asked for, and not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The decoded cookie, decrypted in place; the group name is read from it.
    buf: Vec<u8>,
    group: Range<usize>,
    pub expires: u64,
    /// `Some` for target cookies.
    pub target: Option<SocketAddr>,
}

impl Opened {
    /// The target group the cookie names, as bytes (compared with group names, never shown).
    pub fn group(&self) -> &[u8] {
        &self.buf[self.group.clone()]
    }
}

impl Sealer {
    /// The sealer of cookies under `secret` (the configured `cookie_key`, or the process's own).
    pub fn new(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let okm = prk
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .expect("an AES-256 key is within HKDF-SHA256's output limit");
        Sealer {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// The cookie value carrying `ticket`.
    pub fn seal(&self, ticket: &Ticket<'_>) -> String {
        let group = ticket.group.as_bytes();
        // Names are short; one longer than a length field holds is cut rather than refused, and
        // then names no group when it comes back.
        let group = &group[..group.len().min(u16::MAX as usize)];
        let mut data = Vec::with_capacity(12 + group.len() + 19 + TAG_LEN);
        data.push(VERSION);
        data.push(ticket.kind as u8);
        data.extend_from_slice(&ticket.expires.to_be_bytes());
        data.extend_from_slice(&(group.len() as u16).to_be_bytes());
        data.extend_from_slice(group);
        if let (true, Some(addr)) = (ticket.kind.has_target(), ticket.target) {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    data.push(4);
                    data.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    data.push(6);
                    data.extend_from_slice(&ip.octets());
                }
            }
            data.extend_from_slice(&addr.port().to_be_bytes());
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source works");
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(ticket.kind.aad()),
                &mut data,
            )
            .expect("a cookie is far below AES-GCM's message limit");
        let mut sealed = Vec::with_capacity(NONCE_LEN + data.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The ticket in a cookie `value` of `kind`, if it is one of ours, intact, and not expired at
    /// `now` (unix seconds). Anything else is `None`: a client's cookie is never an error.
    pub fn open(&self, kind: Kind, value: &[u8], now: u64) -> Option<Opened> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        let mut buf = URL_SAFE_NO_PAD.decode(value).ok()?;
        if buf.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = buf.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(kind.aad()), sealed)
            .ok()?
            .len();
        // The plaintext now sits right after the nonce.
        let plain = &buf[NONCE_LEN..NONCE_LEN + plain_len];
        let mut r = Reader { buf: plain, at: 0 };
        if r.byte()? != VERSION || r.byte()? != kind as u8 {
            return None;
        }
        let expires = u64::from_be_bytes(r.array()?);
        if expires <= now {
            return None;
        }
        let len = u16::from_be_bytes(r.array()?) as usize;
        let start = NONCE_LEN + r.at;
        r.take(len)?;
        let group = start..start + len;
        let target = if kind.has_target() {
            let ip = match r.byte()? {
                4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                _ => return None,
            };
            Some(SocketAddr::new(ip, u16::from_be_bytes(r.array()?)))
        } else {
            None
        };
        if r.at != plain.len() {
            return None;
        }
        Some(Opened {
            buf,
            group,
            expires,
            target,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn sealer() -> Sealer {
        Sealer::new(b"a secret of at least sixteen bytes")
    }

    fn target_ticket(target: &str) -> Ticket<'_> {
        Ticket {
            kind: Kind::Target,
            expires: NOW + 3600,
            group: "blue",
            target: Some(target.parse().unwrap()),
        }
    }

    #[test]
    fn tickets_round_trip() {
        let s = sealer();
        for addr in ["127.0.0.1:8080", "[2001:db8::1]:443"] {
            let t = target_ticket(addr);
            let value = s.seal(&t);
            assert!(value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            let opened = s.open(Kind::Target, value.as_bytes(), NOW).unwrap();
            assert_eq!(opened.group(), b"blue");
            assert_eq!(opened.target, t.target);
            assert_eq!(opened.expires, NOW + 3600);
        }
        let group = Ticket {
            kind: Kind::Group,
            expires: NOW + 1,
            group: "green",
            target: None,
        };
        let opened = s.open(Kind::Group, s.seal(&group).as_bytes(), NOW).unwrap();
        assert_eq!((opened.group(), opened.target), (&b"green"[..], None));
    }

    #[test]
    fn each_cookie_has_its_own_nonce() {
        let s = sealer();
        let t = target_ticket("127.0.0.1:1");
        assert_ne!(s.seal(&t), s.seal(&t));
    }

    #[test]
    fn a_change_to_any_byte_is_refused() {
        let s = sealer();
        let value = s.seal(&target_ticket("127.0.0.1:8080"));
        let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for i in 0..raw.len() {
            for bit in [0x01, 0x80] {
                let mut bad = raw.clone();
                bad[i] ^= bit;
                let bad = URL_SAFE_NO_PAD.encode(bad);
                assert_eq!(s.open(Kind::Target, bad.as_bytes(), NOW), None, "byte {i}");
            }
        }
        // Truncated at any length, or extended.
        for n in 0..raw.len() {
            let cut = URL_SAFE_NO_PAD.encode(&raw[..n]);
            assert_eq!(s.open(Kind::Target, cut.as_bytes(), NOW), None, "{n} bytes");
        }
        let mut longer = raw.clone();
        longer.push(0);
        let longer = URL_SAFE_NO_PAD.encode(longer);
        assert_eq!(s.open(Kind::Target, longer.as_bytes(), NOW), None);
    }

    #[test]
    fn another_key_or_kind_opens_nothing() {
        let s = sealer();
        let value = s.seal(&target_ticket("127.0.0.1:8080"));
        let other = Sealer::new(b"another secret of sixteen bytes!");
        assert_eq!(other.open(Kind::Target, value.as_bytes(), NOW), None);
        assert_eq!(s.open(Kind::App, value.as_bytes(), NOW), None);
        assert_eq!(s.open(Kind::Group, value.as_bytes(), NOW), None);
        // The same secret derives the same key: another instance reads it.
        let twin = Sealer::new(b"a secret of at least sixteen bytes");
        assert!(twin.open(Kind::Target, value.as_bytes(), NOW).is_some());
    }

    #[test]
    fn an_expired_cookie_is_refused() {
        let s = sealer();
        let value = s.seal(&target_ticket("127.0.0.1:8080"));
        assert!(s.open(Kind::Target, value.as_bytes(), NOW + 3599).is_some());
        assert_eq!(s.open(Kind::Target, value.as_bytes(), NOW + 3600), None);
        assert_eq!(s.open(Kind::Target, value.as_bytes(), NOW + 99_999), None);
    }

    #[test]
    fn garbage_is_refused() {
        let s = sealer();
        for junk in [
            &b""[..],
            b"x",
            b"not base64 at all!",
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &[0xff; 64],
            &[b'A'; 5000],
        ] {
            assert_eq!(s.open(Kind::Target, junk, NOW), None);
        }
    }
}
