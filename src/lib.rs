//! seawall: a Layer-7 load balancer and TLS terminator in the mould of AWS's Application Load
//! Balancer.
//!
//! # Layout
//!
//! The **data plane** (a multi-thread tokio runtime) carries requests:
//!
//! 1. [`listener`] accepts TCP connections on sockets bound before serving starts;
//! 2. [`server`] runs the TLS handshake (rustls, SNI resolver and ALPN from [`tls`]) and the HTTP/1.1
//!    or HTTP/2 server that ALPN chose, with the idle and request-head deadlines;
//! 3. [`proxy`] handles each request: framing checks, [`routing`] to an action, then a fixed
//!    response, a redirect, or a forward;
//! 4. a forward asks the target group ([`targets`]) for a target via its [`balancer`], and sends
//!    the request on one of that target's pooled connections ([`upstream::pool`]), streaming both
//!    bodies; upgraded connections (WebSocket) become a [`tunnel`].
//!
//! The data plane reads configuration only through one `ArcSwap` load of an immutable
//! [`config::compile::Snapshot`], built from the file by [`config`] (parse, validate, compile).
//!
//! The **control side** ([`app`]) loads and binds everything before serving, and runs the
//! [`admin`] server on its own thread and runtime ([`control`]), beside the [`health`] checkers
//! that write each target's state for the data plane to read. [`metrics`] names every metric;
//! [`error`] maps request-path failures to the status codes ALB answers with.
//!
//! [`bench`] is the `seawall bench` load generator: the same TLS and HTTP stacks, as a client.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balancer;
pub mod bench;
pub mod config;
pub mod control;
pub mod error;
pub mod health;
pub mod http_tokens;
pub mod listener;
pub mod metrics;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod targets;
pub mod tls;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;

pub use app::{App, Running, StartError};
