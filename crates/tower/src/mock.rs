//! Answering downstream calls from a recording: the matching is the mock
//! crate's ([`reprise_mock`]); this is how its errors read here.

pub use reprise_mock::{
    Exhausted, MissReason, MockMiss, MockOptions, MockReport, MockServed, MockStore, Nearest,
    RecordedFailure,
};

use crate::error::TowerError;

impl From<reprise_mock::MockError> for TowerError {
    fn from(error: reprise_mock::MockError) -> TowerError {
        match error {
            reprise_mock::MockError::Tape(error) => TowerError::Tape(error),
            other => TowerError::Config(other.to_string()),
        }
    }
}
