//! The entry points of the fuzz targets (`fuzz/`) into parts of the data plane that are private
//! to the crate. Not an API: it exists so that the targets reach the code they test without the
//! server's modules becoming public, and it changes with them.

pub use crate::server::activity::{HeadScan, Scan, MAX_REQUEST_LINE};
pub use crate::server::framing::{
    judge, lookalike_name, Action, Judgment, Mitigation, RawHead, Reason, Verdict,
};
pub use crate::upstream::h1::{parse_head, Decoding, Framing, Step};
