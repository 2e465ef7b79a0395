//! Active health checks of targets, run from the control thread (never on data-plane workers).
//!
//! - `checker`: the decision, a pure counter of consecutive results per target (ALB's rules);
//! - `probe`: one probe over a fresh connection (HTTP/1.1, HTTP/2 or gRPC, plain or TLS), with
//!   the check's timeout around all of it;
//! - [`run`]: the tasks, one per target, following each group's membership and the snapshot in
//!   force, writing the result into the targets' atomic state that the data plane reads.

mod checker;
mod probe;
mod supervisor;

pub use supervisor::run;
