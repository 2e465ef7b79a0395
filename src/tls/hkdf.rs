//! TLS 1.3's key schedule: HKDF over an HMAC whose keyed state is computed once per secret.
//!
//! aws-lc's HKDF-Expand keys its HMAC afresh for every label it derives from the same secret (two
//! extra runs of the hash's compression function each time), and on AMD CPUs its SHA-384 has no
//! vector path: the key schedule was about a fifth of a full handshake's CPU here. rustls'
//! `HkdfUsingHmac` keys an HMAC once per secret; over RustCrypto's `hmac`, a derivation then costs
//! a clone of the keyed state and the two compressions that HKDF itself needs. Everything else
//! (key exchange, signatures, the AEAD, the transcript hash) stays with aws-lc.

use hmac::digest::OutputSizeUser;
use hmac::Mac;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::{Hkdf, HkdfUsingHmac};
use rustls::{SupportedCipherSuite, Tls13CipherSuite};
use sha2::{Sha256, Sha384};

/// The hash under a TLS 1.3 suite's HMAC.
#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

struct KeyedOnce(Hash);

impl Hmac for KeyedOnce {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        match self.0 {
            Hash::Sha256 => Box::new(Keyed(
                hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
            )),
            Hash::Sha384 => Box::new(Keyed(
                hmac::Hmac::<Sha384>::new_from_slice(key).expect("HMAC takes keys of any length"),
            )),
        }
    }

    fn hash_output_len(&self) -> usize {
        match self.0 {
            Hash::Sha256 => <Sha256 as OutputSizeUser>::output_size(),
            Hash::Sha384 => <Sha384 as OutputSizeUser>::output_size(),
        }
    }
}

/// An HMAC with its key's inner and outer pads already hashed.
struct Keyed<M>(M);

impl<M: Mac + Clone + Send + Sync> Key for Keyed<M> {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for part in middle {
            mac.update(part);
        }
        mac.update(last);
        Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        <M as OutputSizeUser>::output_size()
    }
}

static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&KeyedOnce(Hash::Sha256));
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&KeyedOnce(Hash::Sha384));

/// `suite` with the HKDF above if it is a TLS 1.3 suite; a TLS 1.2 suite as it is. The new suite
/// is leaked, as suites are `'static`: build each once per process.
pub fn keyed_once(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    let SupportedCipherSuite::Tls13(s) = suite else {
        return suite;
    };
    let hkdf: &'static dyn Hkdf = match s.common.hash_provider.algorithm() {
        HashAlgorithm::SHA256 => &HKDF_SHA256,
        HashAlgorithm::SHA384 => &HKDF_SHA384,
        _ => return suite,
    };
    SupportedCipherSuite::Tls13(Box::leak(Box::new(Tls13CipherSuite {
        common: rustls::CipherSuiteCommon {
            suite: s.common.suite,
            hash_provider: s.common.hash_provider,
            confidentiality_limit: s.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: s.aead_alg,
        quic: s.quic,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    use rustls::crypto::tls13::OkmBlock;

    /// The same derivations as aws-lc's own HKDF, byte for byte, for both hashes.
    #[test]
    fn derivations_match_aws_lc() {
        for suite in [cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384] {
            let theirs = suite.tls13().unwrap().hkdf_provider;
            let ours = keyed_once(suite).tls13().unwrap().hkdf_provider;
            let secret = [7u8; 48];
            let salt = [3u8; 48];
            for (a, b) in [
                (
                    theirs.extract_from_secret(Some(&salt), &secret),
                    ours.extract_from_secret(Some(&salt), &secret),
                ),
                (
                    theirs.extract_from_zero_ikm(None),
                    ours.extract_from_zero_ikm(None),
                ),
            ] {
                let info: &[&[u8]] = &[b"tls13 ", b"c hs traffic", &[1, 2, 3]];
                assert_eq!(a.expand_block(info).as_ref(), b.expand_block(info).as_ref());
                // Longer than one hash output: two HMAC blocks.
                let (mut x, mut y) = ([0u8; 80], [0u8; 80]);
                a.expand_slice(info, &mut x).unwrap();
                b.expand_slice(info, &mut y).unwrap();
                assert_eq!(x, y);
            }
            let okm =
                OkmBlock::new(&secret[..suite.tls13().unwrap().common.hash_provider.output_len()]);
            assert_eq!(
                theirs.hmac_sign(&okm, b"finished").as_ref(),
                ours.hmac_sign(&okm, b"finished").as_ref()
            );
            assert_eq!(
                theirs
                    .expander_for_okm(&okm)
                    .expand_block(&[b"key"])
                    .as_ref(),
                ours.expander_for_okm(&okm).expand_block(&[b"key"]).as_ref()
            );
        }
    }
}
