//! The engines behind `reprise ls`, `show` and `stats`.
//!
//! Each works over any [`Source`](reprise_model::Source) and streams:
//! `ls` writes a line per exchange as it reads, `stats` keeps one
//! histogram per endpoint (memory bounded by endpoints, not exchanges),
//! `show` keeps only the exchange asked for and its downstream calls.
//! Damage reported by the source is collected in each summary, not fatal:
//! the caller prints it and decides the exit code.
//!
//! Engines are apart from printers: [`stats`] returns a [`Stats`] that
//! [`render_text`] prints and serde serializes.

mod body;
mod db;
mod error;
mod format;
pub mod json;
mod ls;
mod show;
mod stats;

pub use error::InspectError;
pub use format::{human_duration, human_size};
pub use ls::{LsOptions, LsSummary, ls};
pub use show::{ShowOptions, ShowSummary, show};
pub use stats::{EndpointStats, Stats, StatsOptions, render_text, stats};
