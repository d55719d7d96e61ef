//! The comparator behind `reprise diff`: each replayed exchange against
//! the recorded one it replays (paired by `replay.recorded_id`).
//!
//! - [`pair::compare`]: status, gRPC status, response headers (a default
//!   set that differs between any two runs is ignored), and the body by
//!   content type: JSON structurally, each difference by field path
//!   (`$.items[3].price`, counted as `$.items[*].price`); text by line;
//!   anything else by length and digest. Every pair ends as exactly one of
//!   identical, regressed, or not compared with the reason.
//! - [`Comparison`]: pairs gathered per endpoint and field path, with
//!   counts, one example each, and latency recorded vs replayed; its
//!   [`DiffReport`] renders to the terminal or serializes to JSON.
//!
//! - [`NoiseModel`]: with a baseline (the recording replayed against a
//!   second copy of the old build), differences the baseline also shows
//!   on the same call, or on too many calls for the candidate's count to
//!   stand out, are noise, not regressions.
//!
//! - [`Pairing`]: a replay's results paired with the recording they
//!   replay and compared, pair by pair, into a [`DiffReport`], within a
//!   memory budget: over it, the inputs are cut into parts by recorded id
//!   and spilled to disk as tapes, one part held in memory at a time.
//!   The caller opens the inputs; the comparator opens no socket.
//!
//! - Downstream calls ([`Pairing::downstream`], [`compare_calls`]): the
//!   calls each replayed exchange made (as a mock recorded them) against
//!   the calls recorded under it: missing, extra, or with a changed
//!   request ([`compare_request`], by field path), each a difference of
//!   that exchange, so ignore rules, noise and exit codes apply alike.
//!   PostgreSQL and Redis calls (`Exchange.db`) take part too, named by
//!   their listener and normalised statement or command, compared by
//!   statement and parameters or arguments by position.
//!
//! - [`Judgement`]: how a run that judges (diff, replay or mirror with
//!   `--compare`, mock) ends, as one exit code table for all of them.
//!
//! Paths use the one grammar of `reprise_model::redact::JsonPath`, which
//! `--ignore` rules are written in.

mod db;
mod downstream;
mod html;
pub mod json;
mod judgement;
pub mod noise;
pub mod pair;
mod pairing;
mod report;
mod schema;
mod spill;

pub use downstream::{DownstreamSummary, compare_calls, describe, is_downstream_pattern};
pub use json::{ChangeKind, Difference, diff, diff_with};
pub use judgement::{Finding, Judgement};
pub use noise::{NoiseModel, Suppressed, Thresholds, guess};
pub use pair::{
    EndpointRules, IGNORED_HEADERS, IGNORED_REQUEST_HEADERS, NotCompared, Rules, Verdict, compare,
    compare_request,
};
pub use pairing::{
    DEFAULT_MAX_MEMORY, Noise, OpenError, OpenInput, Paired, Pairing, PairingError, Side,
};
pub use report::{Comparison, DiffReport, EndpointDiff, Example, Group, LatencyPair, PathCount};
pub use schema::{Schema, SchemaError};
