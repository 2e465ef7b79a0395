//! The raw request-head scan (`server::activity`: where a head ends, its size and request-line
//! limits, its Content-Length and Transfer-Encoding lines) on any bytes, cut into any reads.
//!
//! Holds: however the bytes arrive, the answer is the same; on a head that httparse (hyper's
//! parser, as hyper's server configures it) reads whole, the scan ends where httparse does,
//! within the limits, and counts the framing and Host lines httparse sees, their look-alikes and
//! bare LF line ends, since `server::framing` trusts those facts where hyper has already dropped
//! or folded a header.
//!
//! Input: a byte that cuts the rest into reads, two for the head-size limit, then the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall::fuzz::{lookalike_name, HeadScan, RawHead, Scan, MAX_REQUEST_LINE};

fn scan<'a>(reads: impl IntoIterator<Item = &'a [u8]>, max: usize) -> Scan {
    let mut scan = HeadScan::default();
    for read in reads {
        match scan.feed(read, max) {
            Scan::Incomplete => {}
            done => return done,
        }
    }
    Scan::Incomplete
}

/// Reads of 1 to `seed % 32 + 1` bytes, their sizes drawn from the seed, with an empty read now
/// and then.
fn reads(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        if (state >> 8) & 7 == 0 {
            out.push(&rest[..0]);
        }
        let n = (1 + (state >> 16) as usize % (usize::from(seed % 32) + 1)).min(rest.len());
        let (read, tail) = rest.split_at(n);
        out.push(read);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [seed, hi, lo, bytes @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_be_bytes([*hi, *lo]));
    let whole = scan([bytes], max);
    assert_eq!(scan(reads(bytes, *seed), max), whole, "cut by {seed}");
    assert_eq!(scan(bytes.chunks(1), max), whole, "one byte at a time");

    let mut headers = vec![httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(end)) = req.parse(bytes) else {
        return;
    };
    let count = |name: &str| {
        let n = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count();
        u8::try_from(n).unwrap_or(u8::MAX)
    };
    // hyper skips empty lines before the request line, and so does the scan.
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(end)
        .min(end);
    let head = &bytes[start..end];
    let parsed = RawHead {
        content_length: count("content-length"),
        transfer_encoding: count("transfer-encoding"),
        host: count("host"),
        bare_lf: head
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r')),
        lookalike: req
            .headers
            .iter()
            .any(|h| lookalike_name(h.name.as_bytes())),
    };
    let line = bytes
        .iter()
        .skip_while(|&&b| b == b'\r' || b == b'\n')
        .take_while(|&&b| b != b'\n')
        .filter(|&&b| b != b'\r')
        .count();
    match whole {
        Scan::End(raw) => {
            assert_eq!(raw, parsed, "the framing lines httparse read");
            assert_eq!(scan([&bytes[..end]], max), whole, "the head ends at {end}");
            assert_eq!(
                scan([&bytes[..end - 1]], max),
                Scan::Incomplete,
                "not before {end}"
            );
        }
        Scan::TooLarge => assert!(end > max, "a head of {end} bytes is within {max}"),
        Scan::LineTooLong => assert!(line > MAX_REQUEST_LINE, "a request line of {line}"),
        Scan::Incomplete => panic!("httparse read a head of {end} bytes, the scan no end"),
    }
});
