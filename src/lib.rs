//! seawall: a Layer-7 load balancer and TLS terminator in the mould of AWS's Application Load
//! Balancer.
//!
//! # Layout
//!
//! Two planes, with one narrow way between them.
//!
//! The **data plane** (a tokio runtime of its own) carries requests, in this order:
//!
//! 1. [`listener`] accepts TCP connections on sockets the control side bound, up to the cap
//!    [`descriptors`] derives from the file-descriptor limit (beyond it, closed at once), and
//!    [`spread`] evens them out over the data-plane workers;
//! 2. [`server`] reads the PROXY protocol header where a listener expects one
//!    ([`server::proxy_protocol`]: the client it names is the connection's client from then on),
//!    runs the TLS handshake (rustls, with the SNI resolver and policies of [`tls`], and the
//!    client certificate checks of mutual TLS), then the HTTP/1.1 or HTTP/2 server ALPN chose,
//!    with the idle and request-head deadlines;
//!    [`server::framing`] judges each request's body framing (request smuggling) from the raw
//!    head and the parsed headers;
//! 3. [`proxy`] handles each request: the framing verdict, [`routing`] to an action (the router
//!    sees the whole request: host, path, method, headers, query, client address), then a fixed
//!    response, a redirect, or a forward. One record per request (`proxy::record`) collects what
//!    every stage learnt (TLS facts, the rule, the target, ALB's three processing times, statuses,
//!    bytes, trace id, error) and is finished when the response body ends or is dropped: the
//!    metrics are observed from it, and [`access_log`] hands it to a writer thread of its own
//!    (ALB's access and connection logs);
//! 4. a forward picks a group by weight and asks it ([`targets`]) for a target through its
//!    [`balancer`] ([`stickiness`]'s sealed cookies keep a client on its group and target), and
//!    sends the request on one of that target's pooled connections ([`upstream`]; the pool keeps
//!    a shard per data-plane [`worker`]), streaming both bodies; [`upstream::retry`] alone
//!    decides whether a failed attempt goes again; an upgraded connection (WebSocket) becomes a
//!    [`tunnel`]. [`error`] maps what fails to the status code ALB answers with.
//!
//! These modules never import the control side or the configuration's types: the configuration
//! is lowered into types they own ([`protocol`] is the leaf both planes share). All they are
//! handed is a [`snapshot::Plane`]: the compiled configuration in force, one `ArcSwap` of an
//! immutable [`snapshot::Snapshot`], and the [`metrics`] with handles resolved per snapshot.
//!
//! The **control side** runs on a thread and runtime of its own ([`control`]), so that nothing it
//! does takes a data-plane worker:
//!
//! - [`config`] parses and validates a file, then compiles it, purely, into a
//!   [`snapshot::Compiled`]; [`snapshot::Compiled::attach`] joins it to run-time state once a
//!   start or a [`reload`] is sure to go ahead, and the new snapshot is stored whole;
//! - target membership changes in one place, [`targets::GroupState::apply`], whatever the source:
//!   the file on reload, the [`admin`] API, or [`discovery`] (a [`discovery::TargetSource`], such
//!   as [`discovery::ecs::Ecs`], which follows an ECS service's running tasks; one watcher per
//!   group with a discovery block); one sweeper drops targets whose draining is over;
//! - [`health`] checks every target and writes its state into atomics the data plane reads;
//! - [`upgrade`] hands the sockets to a new binary.
//!
//! [`app`] is the composition root that builds both planes and starts them; beside it,
//! [`explain`] is `seawall route`, which loads a file and asks a listener's router why a request
//! would match what it matches. [`mod@bench`] is the
//! `seawall bench` load generator: the same TLS and HTTP stacks, as a client. [`logging`] sets up
//! the application log (text or JSON lines on stderr).

#![forbid(unsafe_code)]
// The layout above is for engineers, who read it with --document-private-items: it links the
// modules that are private to the crate on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub mod access_log;
mod admin;
pub mod app;
mod balancer;
pub mod bench;
pub mod config;
mod control;
mod descriptors;
pub mod discovery;
mod error;
pub mod explain;
#[doc(hidden)]
pub mod fuzz;
mod health;
mod http_tokens;
mod listener;
pub mod logging;
pub mod metrics;
pub mod protocol;
mod proxy;
mod reload;
pub mod routing;
pub mod secrets;
mod server;
pub mod snapshot;
mod spread;
pub mod stickiness;
mod systemd;
pub mod targets;
pub mod tls;
mod tunnel;
mod upgrade;
pub mod upstream;
mod worker;

pub use app::{App, Running, StartError};
