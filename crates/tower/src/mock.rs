//! Answering downstream calls from a recording: the matching is the mock
//! crate's ([`reprise_mock`]); these are the types a service author meets.

pub use reprise_mock::{
    Exhausted, MissReason, MockMiss, MockOptions, MockReport, MockServed, MockStore, Nearest,
    RecordedFailure,
};
