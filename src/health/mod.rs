//! Active health checks of targets, run from the control thread.

mod matcher;

pub use matcher::{Matcher, MatcherError};
