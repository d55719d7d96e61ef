//! The front of reprise's egress proxy, shared by `reprise record
//! --egress` (forward to the real upstream, and record), `reprise mock`
//! (answer from a recording) and `reprise test`. It knows nothing of
//! recording or mocking: it accepts what HTTP proxy clients send and
//! hands each request to a [`Handler`].
//!
//! - [`ca`]: the local CA (`reprise ca init`, `reprise ca env`): where it
//!   lives, how it is made and loaded, the variables that make clients
//!   trust it.
//! - [`leaf`]: leaf certificates per host, signed by the CA, minted on
//!   first use and cached.
//! - [`Front`]: one listener for everything a proxy client sends:
//!   requests in absolute form (`GET http://host/path`) or origin form
//!   (a client given the listener as its base URL, target from `Host`),
//!   and `CONNECT host:port` tunnels. A tunnel's far end is opened first
//!   (a failure is a `502` naming the target and the error, at once);
//!   then its first bytes tell a TLS ClientHello (terminated with a leaf
//!   for the SNI name, the ALPN protocol chosen by the handler from the
//!   client's list), the HTTP/2 preface (h2c) or HTTP/1.1; anything else
//!   is closed and counted. HTTP/1.1 and HTTP/2 are served with hyper.
//! - [`Handler`]: makes a tower `Service` per client connection and per
//!   tunnel; each request carries its [`Target`] in its extensions.
//!   [`layered`] wraps every service a handler makes in a tower layer
//!   (how a recorder observes each call); [`Forward`] passes requests on
//!   to the real upstream, reaching it over TLS with the ALPN list the
//!   client offered.
//! - [`FrontCounters`]: failures by class, for `/metrics`.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use reprise_intercept::{Forward, Front, Leaves, LocalCa, ca};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = LocalCa::load(&ca::resolve_dir(None)?)?;
//! let leaves = Arc::new(Leaves::new(ca)?);
//! // Pass every call on to its real upstream (system roots).
//! let forward: Forward = Forward::new(None)?;
//! let front = Front::new(forward, Some(leaves));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3128").await?;
//! let counters = front.counters();
//! front.serve(listener).await;
//! # let _ = counters;
//! # Ok(())
//! # }
//! ```
//!
//! A handler of one's own implements [`Handler`]: `plain` and `start`
//! return services of `http::Request<hyper::body::Incoming>` answering
//! `http::Response<BoxBody>`; `open` dials (or not) the tunnel's far end.

pub mod ca;
mod forward;
mod front;
mod handler;
pub mod leaf;
mod sniff;

pub use ca::{CaError, CaFiles, LocalCa};
pub use forward::{Dialled, Forward, ForwardBody, ForwardFuture, ForwardService};
pub use front::{
    EventSink, Front, FrontCounters, FrontCounts, FrontEvent, FrontOptions, FrontService, WarnSink,
};
pub use handler::{
    Arrival, BoxBody, BoxError, Handler, Layered, Opening, Started, Target, layered,
};
pub use leaf::Leaves;
