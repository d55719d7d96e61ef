//! The recorded calls nearest to a missed one, to say why it missed.

use reprise_model::key::CallKey;

use crate::db::CallKind;
use crate::db::key::describe_db;
use crate::miss::Nearest;
use crate::store::MockStore;

impl MockStore {
    /// The three of `candidates` nearest to `key` (fewest differing
    /// fields), each with the call it was used by.
    pub(crate) fn nearest(
        &self,
        candidates: &[usize],
        key: &CallKey,
        used_by: impl Fn(usize) -> Option<u32>,
    ) -> Vec<Nearest> {
        let kind = CallKind::of(key);
        let mut nearest: Vec<Nearest> = candidates
            .iter()
            .map(|&i| (i, &self.calls[i]))
            // A database call is near the calls of its own database
            // only; an HTTP call, HTTP calls only.
            .filter(|(_, recorded)| {
                CallKind::of(&recorded.key) == kind
                    && (kind == CallKind::Http || recorded.key.authority == key.authority)
            })
            .map(|(i, recorded)| Nearest {
                id: recorded.exchange.id_hex(),
                call: match kind {
                    CallKind::Http => describe(&recorded.key),
                    _ => describe_db(&recorded.exchange, &recorded.key),
                },
                differs: recorded.key.differences(key),
                used_by: used_by(i),
                kind,
            })
            .collect();
        nearest.sort_by_key(|n| n.differs.len());
        nearest.truncate(3);
        nearest
    }
}

/// `METHOD authority/path?query` of a key, for explanations.
pub(crate) fn describe(key: &CallKey) -> String {
    let query: Vec<String> = key.query.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    format!("{} {}{}{}", key.method, key.authority, key.path, query)
}
