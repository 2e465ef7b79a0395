//! The HTTP/1 client's reading of a target's answer (`upstream::h1`): the response head, then
//! its body as the head frames it (a length, chunked with trailers, or until the target closes),
//! on any bytes, cut into any reads.
//!
//! Holds: nothing panics or loops; however the bytes arrive, the head, the body's bytes, its
//! trailers and how it ends are the same as when they arrive at once; a body of a declared length
//! yields exactly that many bytes before it is done; nothing buffered is lost or invented (what
//! the decoder took plus what it left is what it was given).
//!
//! Input: a byte that cuts the rest into reads, a byte whose low bit makes the request a HEAD
//! and next bit an upgrade, then the bytes.

#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;
use seawall::fuzz::{parse_head, Decoding, Step};

#[derive(Debug, PartialEq)]
enum Outcome {
    /// More bytes were needed.
    Short,
    Failed(String),
    Ended,
}

#[derive(Debug, PartialEq)]
struct Read {
    head: Option<String>,
    body: Vec<u8>,
    trailers: Option<String>,
    outcome: Outcome,
    /// Bytes of the input left after a body that ended.
    left: usize,
}

fn read<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
    total: usize,
    method: &Method,
    upgrade: bool,
) -> Read {
    let mut out = Read {
        head: None,
        body: Vec::new(),
        trailers: None,
        outcome: Outcome::Short,
        left: 0,
    };
    let mut buf = BytesMut::new();
    let mut decoding: Option<Decoding> = None;
    let mut given = 0usize;
    let mut taken = 0usize;
    let mut declared = None;
    for read in reads {
        buf.extend_from_slice(read);
        given += read.len();
        loop {
            let Some(d) = &mut decoding else {
                let before = buf.len();
                match parse_head(&mut buf, method, upgrade) {
                    Ok(Some((head, framing))) => {
                        taken += before - buf.len();
                        out.head = Some(format!("{:?} {:?}", head.status(), head.headers()));
                        if let Decoding::Length(n) = framing.decoding {
                            declared = Some(n);
                        }
                        decoding = Some(framing.decoding);
                        continue;
                    }
                    // Informational heads before it may have been taken.
                    Ok(None) => {
                        taken += before - buf.len();
                        break;
                    }
                    Err(e) => {
                        out.outcome = Outcome::Failed(e.to_string());
                        return out;
                    }
                }
            };
            let before = buf.len();
            let step = match d.step(&mut buf) {
                Ok(step) => step,
                Err(e) => {
                    out.outcome = Outcome::Failed(e.to_string());
                    return out;
                }
            };
            taken += before - buf.len();
            // An upgraded connection's body ends at once without being "done".
            let ended = matches!(step, Step::End);
            match step {
                Step::Data(data) => {
                    assert!(!data.is_empty(), "no empty data");
                    out.body.extend_from_slice(&data);
                }
                Step::Trailers(t) => {
                    out.trailers = Some(format!("{t:?}"));
                    assert!(d.is_done());
                }
                Step::End => assert!(d.is_done() || matches!(d, Decoding::Upgraded)),
                Step::More => break,
            }
            if ended || d.is_done() {
                out.outcome = Outcome::Ended;
                out.left = total - taken;
                if let Some(n) = declared {
                    assert_eq!(out.body.len() as u64, n, "a length is kept");
                }
                assert_eq!(taken + buf.len(), given, "nothing lost or invented");
                return out;
            }
        }
        assert_eq!(taken + buf.len(), given, "nothing lost or invented");
    }
    out
}

/// Reads of 1 to `seed % 32 + 1` bytes, their sizes drawn from the seed.
fn reads(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % (usize::from(seed % 32) + 1)).min(rest.len());
        let (read, tail) = rest.split_at(n);
        out.push(read);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [seed, how, bytes @ ..] = data else {
        return;
    };
    let method = if how & 1 == 1 { Method::HEAD } else { Method::GET };
    let upgrade = how & 2 == 2;
    let whole = read([bytes], bytes.len(), &method, upgrade);
    let cut = read(reads(bytes, *seed), bytes.len(), &method, upgrade);
    // A head or framing error found with the whole input may show as `Short` when cut (the
    // reads stop at the same place only once all have come), so compare what both reached.
    if whole.outcome != Outcome::Short && cut.outcome != Outcome::Short {
        assert_eq!(whole, cut, "the same whatever the reads");
    }
});
