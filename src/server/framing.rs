//! How a request's body is framed, judged once: facts in, verdict out.
//!
//! Request smuggling lives in the gap between two parsers that read a request's body boundaries
//! differently. seawall sees a request twice: the IO wrapper scans the raw HTTP/1 head
//! ([`RawHead`], see `server::activity`) and hyper parses it, silently repairing some ambiguities
//! on the way (it drops the Content-Length of a head that also has Transfer-Encoding, and keeps
//! one of repeated equal Content-Length lines). This module puts both views side by side and
//! classifies the request the way ALB's HTTP desync mitigation does (after AWS's
//! http_desync_guardian): [`Verdict::Compliant`], `Acceptable`, `Ambiguous` or `Severe`, with a
//! typed [`Reason`].
//!
//! The verdict is the seam for ALB's mitigation modes (monitor, defensive, strictest). Until they
//! exist seawall has one fixed policy, [`Verdict::rejected`]: it refuses exactly the framings it
//! always refused, whatever their tier, and only classifies the rest.
//!
//! Pure on purpose: no IO, no shared state, so every case is a row in the table test below.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};

use crate::http_tokens;

/// What the scan of a raw HTTP/1 request head saw before hyper parsed it.
///
/// Counts are of header lines, whatever their values, and saturate: more than a few is as
/// telling as many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawHead {
    pub content_length: u8,
    pub transfer_encoding: u8,
}

/// Why a request is not [`Verdict::Compliant`]. The ALB name of each reason, where ALB has one,
/// is in its comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Content-Length and Transfer-Encoding together (`BothTeClPresent`).
    BothContentLengthAndTransferEncoding,
    /// Content-Length values that disagree, in one line or several (`MultipleContentLength`).
    ConflictingContentLength,
    /// A Content-Length value that cannot be forwarded as a header (`BadContentLength`).
    BadContentLength,
    /// The same Content-Length more than once (`DuplicateContentLength`).
    DuplicateContentLength,
    /// `Content-Length: 0` on a GET or HEAD (`GetHeadZeroContentLength`).
    GetHeadZeroContentLength,
    /// A non-zero Content-Length on a GET or HEAD, whose bodies have no defined meaning
    /// (`UndefinedContentLengthSemantics`).
    UndefinedContentLengthSemantics,
    /// Transfer-Encoding on a GET or HEAD, or in HTTP/1.0, which has no such header
    /// (`UndefinedTransferEncodingSemantics`).
    UndefinedTransferEncodingSemantics,
    /// `chunked` more than once (`MultipleTransferEncodingChunked`).
    MultipleTransferEncodingChunked,
    /// A transfer coding besides `chunked`. Transfer-Encoding is hop-by-hop, so the target gets
    /// the de-chunked body without being told of the other coding. ALB calls known codings
    /// compliant.
    TransferCodingOtherThanChunked,
}

impl Reason {
    /// For logs, and the text of the 400 answer when the request is rejected (which clients and
    /// tests see, so it does not change).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BothContentLengthAndTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            Reason::ConflictingContentLength => "conflicting Content-Length values",
            Reason::BadContentLength => "bad Content-Length",
            Reason::DuplicateContentLength => "repeated Content-Length",
            Reason::GetHeadZeroContentLength => "Content-Length: 0 on a GET or HEAD request",
            Reason::UndefinedContentLengthSemantics => "Content-Length on a GET or HEAD request",
            Reason::UndefinedTransferEncodingSemantics => {
                "Transfer-Encoding on a GET or HEAD request, or in HTTP/1.0"
            }
            Reason::MultipleTransferEncodingChunked => "chunked more than once",
            Reason::TransferCodingOtherThanChunked => "a transfer coding other than chunked",
        }
    }

    /// ALB's `classification_reason` code.
    pub fn alb_code(self) -> &'static str {
        match self {
            Reason::BothContentLengthAndTransferEncoding => "BothTeClPresent",
            Reason::ConflictingContentLength => "MultipleContentLength",
            Reason::BadContentLength => "BadContentLength",
            Reason::DuplicateContentLength => "DuplicateContentLength",
            Reason::GetHeadZeroContentLength => "GetHeadZeroContentLength",
            Reason::UndefinedContentLengthSemantics => "UndefinedContentLengthSemantics",
            Reason::UndefinedTransferEncodingSemantics => "UndefinedTransferEncodingSemantics",
            Reason::MultipleTransferEncodingChunked => "MultipleTransferEncodingChunked",
            // ALB has no code for a coding it calls compliant; this is the closest of its own.
            Reason::TransferCodingOtherThanChunked => "BadTransferEncoding",
        }
    }

    /// The reason's tier in ALB's classification.
    pub fn verdict(self) -> Verdict {
        use Reason::*;
        match self {
            TransferCodingOtherThanChunked | GetHeadZeroContentLength => Verdict::Acceptable(self),
            BothContentLengthAndTransferEncoding
            | DuplicateContentLength
            | UndefinedContentLengthSemantics
            | UndefinedTransferEncodingSemantics => Verdict::Ambiguous(self),
            ConflictingContentLength | BadContentLength | MultipleTransferEncodingChunked => {
                Verdict::Severe(self)
            }
        }
    }

    /// seawall's policy until desync mitigation modes exist: what it refused before this module
    /// did the judging. Stricter than ALB's defensive mode for
    /// [`Reason::BothContentLengthAndTransferEncoding`] (Ambiguous: ALB forwards it and closes the
    /// connections), more lenient for [`Reason::MultipleTransferEncodingChunked`] (Severe, which
    /// ALB blocks).
    pub fn rejected(self) -> bool {
        matches!(
            self,
            Reason::BothContentLengthAndTransferEncoding
                | Reason::ConflictingContentLength
                | Reason::BadContentLength
        )
    }
}

/// ALB's classification of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Compliant,
    /// Not RFC compliant, but no known risk.
    Acceptable(Reason),
    /// Parsers could disagree about the request, or about its body.
    Ambiguous(Reason),
    /// Malformed or highly suspicious.
    Severe(Reason),
}

impl Verdict {
    pub fn cause(&self) -> Option<Reason> {
        match *self {
            Verdict::Compliant => None,
            Verdict::Acceptable(r) | Verdict::Ambiguous(r) | Verdict::Severe(r) => Some(r),
        }
    }

    /// For logs; also the 400 answer's text (see [`Reason::as_str`]).
    pub fn reason(&self) -> &'static str {
        self.cause().map_or("compliant", Reason::as_str)
    }

    /// ALB's `classification` and `classification_reason`; `None` for a compliant request
    /// (which ALB logs as `-`).
    pub fn alb_classification(&self) -> Option<(&'static str, &'static str)> {
        let class = match self {
            Verdict::Compliant => return None,
            Verdict::Acceptable(_) => "Acceptable",
            Verdict::Ambiguous(_) => "Ambiguous",
            Verdict::Severe(_) => "Severe",
        };
        Some((class, self.cause()?.alb_code()))
    }

    /// Whether seawall answers 400 instead of forwarding (see [`Reason::rejected`]).
    pub fn rejected(&self) -> bool {
        self.cause().is_some_and(Reason::rejected)
    }

    fn tier(&self) -> u8 {
        match self {
            Verdict::Compliant => 0,
            Verdict::Acceptable(_) => 1,
            Verdict::Ambiguous(_) => 2,
            Verdict::Severe(_) => 3,
        }
    }

    /// The worse of the two; on a tie the first found stays, as in ALB's classifier.
    fn raise(&mut self, to: Verdict) {
        if to.tier() > self.tier() {
            *self = to;
        }
    }
}

/// A [`Verdict`] and what forwarding the request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgment {
    pub verdict: Verdict,
    /// The single Content-Length to forward in place of repeated equal ones, which hyper passes on
    /// from HTTP/2 clients (HTTP/1 ones it folds or refuses itself).
    pub content_length: Option<HeaderValue>,
}

impl Judgment {
    fn of(verdict: Verdict) -> Self {
        Judgment {
            verdict,
            content_length: None,
        }
    }

    fn raise(&mut self, reason: Reason) {
        self.verdict.raise(reason.verdict());
    }
}

/// Judges a request's framing from its raw head (`None` when it was not scanned: HTTP/2, or an
/// HTTP/1 head that was already buffered behind the previous request) and what hyper parsed.
///
/// The reasons seawall rejects are judged first and end the judgment, whatever else the request
/// carries, so that classifying more can never let through what was refused. Beyond the
/// Content-Length values, which are always read, the common request costs nothing more:
/// Transfer-Encoding is only looked up when the raw head showed one (or was not scanned).
pub fn judge(
    raw: Option<RawHead>,
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Judgment {
    use Reason::*;
    let reject = |reason: Reason| Judgment::of(reason.verdict());

    // hyper has already dropped the Content-Length of such a head, so only the raw bytes tell.
    if raw.is_some_and(|r| r.content_length > 0 && r.transfer_encoding > 0) {
        return reject(BothContentLengthAndTransferEncoding);
    }
    let mut first: Option<&[u8]> = None;
    let mut repeated = false;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in http_tokens::raw_parts(value) {
            match first {
                None => first = Some(part),
                Some(f) if f == part => repeated = true,
                Some(_) => return reject(ConflictingContentLength),
            }
        }
    }
    let mut judgment = Judgment::of(Verdict::Compliant);
    if let Some(first) = first {
        if headers.contains_key(header::TRANSFER_ENCODING) {
            return reject(BothContentLengthAndTransferEncoding);
        }
        if repeated {
            match single_value(first) {
                Ok(one) => judgment.content_length = Some(one),
                Err(reason) => return reject(reason),
            }
        }
        // More raw lines than values: hyper kept one of repeated equal lines itself.
        if repeated || raw.is_some_and(|r| r.content_length > 1) {
            judgment.raise(DuplicateContentLength);
        }
        if bodiless(method) {
            judgment.raise(if first == b"0" {
                GetHeadZeroContentLength
            } else {
                UndefinedContentLengthSemantics
            });
        }
        return judgment;
    }
    // HTTP/2 has no Transfer-Encoding (h2 refuses the header).
    if !raw.map_or(version < Version::HTTP_2, |r| r.transfer_encoding > 0) {
        return judgment;
    }
    let mut any = false;
    let mut chunked = 0u32;
    let mut other = false;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        any = true;
        for coding in http_tokens::raw_parts(value) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else {
                other = true;
            }
        }
    }
    if any {
        if chunked > 1 {
            judgment.raise(MultipleTransferEncodingChunked);
        }
        if bodiless(method) || version < Version::HTTP_11 {
            judgment.raise(UndefinedTransferEncodingSemantics);
        }
        if other {
            judgment.raise(TransferCodingOtherThanChunked);
        }
    }
    judgment
}

/// One of the repeated Content-Length values, to forward alone.
fn single_value(part: &[u8]) -> Result<HeaderValue, Reason> {
    HeaderValue::from_bytes(part).map_err(|_| Reason::BadContentLength)
}

/// Methods whose request bodies have no defined meaning (RFC 9110, 9.3.1 and 9.3.2).
fn bodiless(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reason::*;
    use Verdict::*;

    fn raw(content_length: u8, transfer_encoding: u8) -> Option<RawHead> {
        Some(RawHead {
            content_length,
            transfer_encoding,
        })
    }

    /// Raw head, method, version, headers as hyper gave them; the verdict, the Content-Length to
    /// forward instead of the request's.
    type Row<'a> = (
        Option<RawHead>,
        &'a Method,
        Version,
        &'a [(&'static str, &'static str)],
        Verdict,
        Option<&'static str>,
    );

    #[test]
    fn framings_are_judged() {
        const CL: &str = "content-length";
        const TE: &str = "transfer-encoding";
        const H1: Version = Version::HTTP_11;
        const H2: Version = Version::HTTP_2;
        let post = Method::POST;
        let get = Method::GET;
        let head = Method::HEAD;
        #[rustfmt::skip]
        let table: &[Row] = &[
            (raw(0, 0), &get, H1, &[], Compliant, None),
            (None, &get, H2, &[], Compliant, None),
            (raw(1, 0), &post, H1, &[(CL, "5")], Compliant, None),
            (raw(0, 1), &post, H1, &[(TE, "chunked")], Compliant, None),
            (None, &post, H1, &[(TE, "chunked")], Compliant, None),
            (raw(0, 1), &post, H1, &[(TE, "Chunked")], Compliant, None),
            // hyper has dropped the Content-Length: only the raw head tells.
            (raw(1, 1), &post, H1, &[(TE, "chunked")], Ambiguous(BothContentLengthAndTransferEncoding), None),
            (raw(1, 1), &get, H1, &[(TE, "chunked")], Ambiguous(BothContentLengthAndTransferEncoding), None),
            // Unscanned (pipelined) heads, or hyper keeping both.
            (None, &post, H1, &[(CL, "5"), (TE, "chunked")], Ambiguous(BothContentLengthAndTransferEncoding), None),
            (None, &post, H1, &[(TE, "chunked"), (CL, "5")], Ambiguous(BothContentLengthAndTransferEncoding), None),
            (None, &post, H2, &[(CL, "5"), (CL, "6")], Severe(ConflictingContentLength), None),
            (None, &post, H2, &[(CL, "5, 6")], Severe(ConflictingContentLength), None),
            (None, &post, H2, &[(CL, "5"), (CL, "5, 6")], Severe(ConflictingContentLength), None),
            // Conflicting values win over Transfer-Encoding, as they always did.
            (None, &post, H1, &[(CL, "5"), (CL, "6"), (TE, "chunked")], Severe(ConflictingContentLength), None),
            // Repeated equal values are folded into one.
            (None, &post, H2, &[(CL, "5"), (CL, "5")], Ambiguous(DuplicateContentLength), Some("5")),
            (raw(1, 0), &post, H1, &[(CL, "5 ,5")], Ambiguous(DuplicateContentLength), Some("5")),
            (raw(2, 0), &post, H1, &[(CL, "5")], Ambiguous(DuplicateContentLength), None),
            (raw(1, 0), &get, H1, &[(CL, "0")], Acceptable(GetHeadZeroContentLength), None),
            (raw(1, 0), &head, H1, &[(CL, "0")], Acceptable(GetHeadZeroContentLength), None),
            (raw(1, 0), &get, H1, &[(CL, "5")], Ambiguous(UndefinedContentLengthSemantics), None),
            // The first reason found keeps a tie.
            (None, &get, H2, &[(CL, "5"), (CL, "5")], Ambiguous(DuplicateContentLength), Some("5")),
            (raw(0, 1), &get, H1, &[(TE, "chunked")], Ambiguous(UndefinedTransferEncodingSemantics), None),
            (raw(0, 1), &post, Version::HTTP_10, &[(TE, "chunked")], Ambiguous(UndefinedTransferEncodingSemantics), None),
            (raw(0, 2), &post, H1, &[(TE, "chunked"), (TE, "chunked")], Severe(MultipleTransferEncodingChunked), None),
            (raw(0, 1), &get, H1, &[(TE, "chunked, chunked")], Severe(MultipleTransferEncodingChunked), None),
            (raw(0, 1), &post, H1, &[(TE, "gzip, chunked")], Acceptable(TransferCodingOtherThanChunked), None),
            (None, &post, H1, &[(TE, "gzip"), (TE, "chunked")], Acceptable(TransferCodingOtherThanChunked), None),
            // A worse tier wins over a milder one found first.
            (raw(0, 1), &get, H1, &[(TE, "gzip, chunked")], Ambiguous(UndefinedTransferEncodingSemantics), None),
            // The raw head said no Transfer-Encoding, and it is not looked up again.
            (raw(0, 0), &post, H1, &[(TE, "gzip, chunked")], Compliant, None),
        ];
        let mut seen = Vec::new();
        for (i, &(raw, method, version, pairs, want, fold)) in table.iter().enumerate() {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            let got = judge(raw, method, version, &headers);
            assert_eq!(got.verdict, want, "row {i}: {pairs:?}");
            assert_eq!(
                got.content_length.as_ref().map(|v| v.to_str().unwrap()),
                fold,
                "row {i}: {pairs:?}"
            );
            seen.extend(want.cause());
        }
        // No header value can hold what `HeaderValue` refuses, so this one is not a row.
        assert_eq!(single_value(b"5\0"), Err(BadContentLength));
        assert_eq!(BadContentLength.verdict(), Severe(BadContentLength));
        seen.push(BadContentLength);

        for reason in [
            BothContentLengthAndTransferEncoding,
            ConflictingContentLength,
            BadContentLength,
            DuplicateContentLength,
            GetHeadZeroContentLength,
            UndefinedContentLengthSemantics,
            UndefinedTransferEncodingSemantics,
            MultipleTransferEncodingChunked,
            TransferCodingOtherThanChunked,
        ] {
            assert!(seen.contains(&reason), "no row for {reason:?}");
        }
    }

    #[test]
    fn what_was_refused_is_refused_with_the_same_words() {
        let rejected = [
            (
                BothContentLengthAndTransferEncoding,
                "both Content-Length and Transfer-Encoding",
            ),
            (
                ConflictingContentLength,
                "conflicting Content-Length values",
            ),
            (BadContentLength, "bad Content-Length"),
        ];
        for (reason, text) in rejected {
            assert!(reason.verdict().rejected(), "{reason:?}");
            assert_eq!(reason.verdict().reason(), text);
        }
        for reason in [
            DuplicateContentLength,
            GetHeadZeroContentLength,
            UndefinedContentLengthSemantics,
            UndefinedTransferEncodingSemantics,
            MultipleTransferEncodingChunked,
            TransferCodingOtherThanChunked,
        ] {
            assert!(
                !reason.verdict().rejected(),
                "{reason:?} is only classified"
            );
        }
        assert!(!Compliant.rejected());
    }
}
