//! The recorded calls nearest to a missed one, to say why it missed.

use reprise_model::key::CallKey;

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
        let mut nearest: Vec<Nearest> = candidates
            .iter()
            .map(|&i| {
                let recorded = &self.calls[i];
                Nearest {
                    id: recorded.exchange.id_hex(),
                    call: describe(&recorded.key),
                    differs: recorded.key.differences(key),
                    used_by: used_by(i),
                }
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
