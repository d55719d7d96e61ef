//! Choosing the recorded call that answers a call: in its scope, by its
//! key, each recorded call once, then the shared calls and the global
//! pool.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use reprise_model::key::CallKey;
use reprise_model::{Exchange, HeaderList, Protocol, display_id};

use crate::miss::{MissReason, MockMiss};
use crate::options::Exhausted;
use crate::respond::Pool;
use crate::scope::{MockScope, MockUse};
use crate::store::MockStore;

impl MockStore {
    /// The recorded call that answers `key` in `scope`, and which
    /// recorded calls it came from; or the miss. The scope's own calls
    /// first, then a shared one, then the unlinked pool (calls recorded
    /// with no parent, in recorded order), then (with `global`) all.
    pub(crate) fn choose(
        &self,
        scope: Option<&MockScope>,
        key: &CallKey,
        call: String,
    ) -> Result<(&Exchange, Pool), MockMiss> {
        self.choose_in(scope, key, call, self.options.global, true)
    }

    /// [`choose`](Self::choose), with all recorded calls asked last when
    /// `global` (and the scope recorded nothing).
    pub(crate) fn choose_in(
        &self,
        scope: Option<&MockScope>,
        key: &CallKey,
        call: String,
        global: bool,
        count_miss: bool,
    ) -> Result<(&Exchange, Pool), MockMiss> {
        let miss = |call, replay_of, reason, nearest| {
            if count_miss {
                self.miss(call, replay_of, reason, nearest)
            } else {
                self.uncounted_miss(call, replay_of, reason, nearest)
            }
        };
        let replay_of = scope.and_then(MockScope::replay_of);
        let scoped = replay_of.and_then(|id| self.by_parent.get(id));
        // The scope's own recorded calls: what they missed for, kept for
        // the miss.
        let mut scope_miss = None;
        if let (Some(scope), Some(found)) = (scope, scoped) {
            let mut usage = scope.usage();
            match self.pick(found, key, &mut usage) {
                Ok(i) => return Ok(self.served(i, &call, replay_of, Pool::Scope)),
                Err(matching) => scope_miss = Some((found, matching)),
            }
        }
        if let Some(exchange) = self.shared_answer(key, &call) {
            return Ok((exchange, Pool::Shared));
        }
        // The unlinked pool, then all recorded calls: one use each for the
        // whole mock, in recorded order.
        let mut pool_miss = None;
        for (pool, candidates) in [(Pool::Unlinked, &self.unlinked), (Pool::Global, &self.all)] {
            let asked = match pool {
                Pool::Global => global && scoped.is_none(),
                _ => !candidates.is_empty(),
            };
            if !asked {
                continue;
            }
            let mut usage = self.unscoped.lock().unwrap_or_else(PoisonError::into_inner);
            match self.pick(candidates, key, &mut usage) {
                Ok(i) => {
                    drop(usage);
                    return Ok(self.served(i, &call, replay_of, pool));
                }
                // The last pool tried, the largest, names the nearest.
                Err(matching) => pool_miss = Some((candidates.as_slice(), matching)),
            }
        }
        // Why it missed, in the calls it was most likely meant for: its
        // scope's, else the pool's.
        let (candidates, matching, scoped_use) = match (scope_miss, pool_miss) {
            (Some((found, matching)), _) => (found.as_slice(), matching, true),
            (None, Some((candidates, matching))) => (candidates, matching, false),
            (None, None) => {
                let reason = match (scope, replay_of) {
                    (None, _) => MissReason::NoScope,
                    (Some(_), None) => MissReason::NotReplayed,
                    (Some(_), Some(_)) => MissReason::NothingRecorded,
                };
                return Err(miss(call, replay_of, reason, Vec::new()));
            }
        };
        let nearest = match scope {
            Some(scope) if scoped_use => {
                let usage = scope.usage();
                self.nearest(candidates, key, |i| usage.used.get(&(self.id, i)).copied())
            }
            _ => {
                let usage = self.unscoped.lock().unwrap_or_else(PoisonError::into_inner);
                self.nearest(candidates, key, |i| usage.used.get(&(self.id, i)).copied())
            }
        };
        let unservable = self
            .calls
            .iter()
            .find(|c| c.key == *key && c.not_mockable.is_some())
            .and_then(|c| c.not_mockable.clone());
        let reason = if let (0, Some(why)) = (matching, unservable) {
            MissReason::NotMockable { why }
        } else if matching == 0 {
            MissReason::NoMatch {
                recorded: candidates.len(),
            }
        } else {
            MissReason::Exhausted { recorded: matching }
        };
        Err(miss(call, replay_of, reason, nearest))
    }

    /// Of `candidates`, the recorded call that answers `key` given what
    /// `usage` has used (counted there as its next call): the first
    /// unused one with the key, else as the exhausted policy says. The
    /// error is how many of them have the key.
    fn pick(
        &self,
        candidates: &[usize],
        key: &CallKey,
        usage: &mut MockUse,
    ) -> Result<usize, usize> {
        usage.calls += 1;
        let call_number = usage.calls;
        let matching: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.calls[i].key == *key && self.calls[i].not_mockable.is_none())
            .collect();
        let unused = matching
            .iter()
            .copied()
            .find(|&i| !usage.used.contains_key(&(self.id, i)));
        let chosen = match (unused, matching.last(), self.options.exhausted) {
            (Some(i), _, _) => Some(i),
            (None, Some(&last), Exhausted::RepeatLast) => Some(last),
            (None, Some(_), Exhausted::Cycle) => {
                let extra = usage.cycles.entry((self.id, matching[0])).or_insert(0);
                let i = matching[*extra as usize % matching.len()];
                *extra += 1;
                Some(i)
            }
            _ => None,
        };
        let Some(i) = chosen else {
            return Err(matching.len());
        };
        usage.used.entry((self.id, i)).or_insert(call_number);
        Ok(i)
    }

    /// Recorded call `i` answers `call`: counted, and given with its pool.
    fn served(
        &self,
        i: usize,
        call: &str,
        replay_of: Option<&[u8]>,
        pool: Pool,
    ) -> (&Exchange, Pool) {
        self.served.fetch_add(1, Ordering::Relaxed);
        match pool {
            Pool::Global => self.served_global.fetch_add(1, Ordering::Relaxed),
            Pool::Unlinked => self.served_unlinked.fetch_add(1, Ordering::Relaxed),
            Pool::Scope | Pool::Shared => 0,
        };
        let exchange = &self.calls[i].exchange;
        tracing::debug!(
            call = %call,
            recorded = %display_id(&exchange.id),
            scope = %replay_of.map(display_id).unwrap_or_default(),
            pool = ?pool,
            "reprise mock: served"
        );
        (exchange, pool)
    }

    /// The first shared recorded call with `key`, served (never used up).
    fn shared_answer(&self, key: &CallKey, call: &str) -> Option<&Exchange> {
        let &i = self.shared.iter().find(|&&i| self.calls[i].key == *key)?;
        self.served.fetch_add(1, Ordering::Relaxed);
        self.served_shared.fetch_add(1, Ordering::Relaxed);
        let exchange = &self.calls[i].exchange;
        tracing::debug!(
            call = %call,
            recorded = %display_id(&exchange.id),
            "reprise mock: served by a shared recorded call"
        );
        Some(exchange)
    }

    /// The recorded calls in scope that a gRPC stream with key `head`
    /// (its body aside) may follow message by message, in recorded
    /// order; `None` unless at least one of them is interactive (answered
    /// before its request stream ended) and every one of them answered
    /// with an ordinary head (status 200, not trailers-only), the head
    /// the stream is answered with before any request message arrives.
    pub(crate) fn live_candidates(
        &self,
        scope: Option<&MockScope>,
        head: &CallKey,
    ) -> Option<(Vec<usize>, Pool)> {
        let replay_of = scope.and_then(MockScope::replay_of);
        let (candidates, pool): (&[usize], Pool) = match (
            replay_of.and_then(|id| self.by_parent.get(id)),
            self.options.global,
        ) {
            (Some(found), _) => (found, Pool::Scope),
            (None, true) => (&self.all, Pool::Global),
            (None, false) if !self.unlinked.is_empty() => (&self.unlinked, Pool::Unlinked),
            (None, false) => return None,
        };
        let heads: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let key = &self.calls[i].key;
                key.method == head.method
                    && key.authority == head.authority
                    && key.path == head.path
                    && key.query == head.query
            })
            .collect();
        let plain_head = |exchange: &Exchange| {
            exchange.protocol() == Protocol::Grpc
                && exchange.response.as_ref().is_some_and(|r| {
                    r.status == 200 && r.headers.header_str("grpc-status").is_none()
                })
        };
        let usable = !heads.is_empty()
            && heads.iter().all(|&i| plain_head(&self.calls[i].exchange))
            && heads
                .iter()
                .any(|&i| crate::live::interactive(&self.calls[i].exchange));
        usable.then_some((heads, pool))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use reprise_model::key::KeyParts;
    use reprise_model::select::ExchangeFilter;
    use reprise_model::{Exchange, Request, Response, Role};

    use super::*;
    use crate::miss::MissReason;
    use crate::options::MockOptions;

    /// A downstream `GET inventory/PATH` recorded under `parent`,
    /// answered with `answer`.
    fn recorded(parent: u8, path: &str, answer: &str, at: u64) -> Exchange {
        Exchange {
            id: vec![parent, at as u8],
            parent_id: vec![parent; 16],
            role: Role::Downstream as i32,
            recorded_at_ns: at,
            request: Some(Request {
                method: "GET".into(),
                authority: "inventory".into(),
                path: path.into(),
                ..Default::default()
            }),
            response: Some(Response {
                status: 200,
                body: Bytes::from(answer.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn key(path: &str) -> CallKey {
        CallKey::new(
            KeyParts {
                method: "GET",
                authority: "inventory",
                path_and_query: path,
                content_type: None,
                body: &[],
            },
            false,
        )
    }

    fn replaying(parent: u8) -> MockScope {
        MockScope::replaying(&[parent; 16])
    }

    fn answer(
        store: &MockStore,
        scope: Option<&MockScope>,
        path: &str,
    ) -> Result<String, MissReason> {
        store
            .choose(scope, &key(path), path.to_string())
            .map(|(e, _)| String::from_utf8_lossy(&e.response.as_ref().unwrap().body).into_owned())
            .map_err(|miss| miss.reason)
    }

    #[test]
    fn shared_calls_answer_in_any_scope_any_number_of_times_after_the_scoped_ones() {
        let tape = vec![
            recorded(1, "/token", "token recorded under 1", 1),
            recorded(1, "/stock", "stock of 1", 2),
            recorded(2, "/stock", "stock of 2", 3),
        ];
        let options = MockOptions {
            shared: Some(ExchangeFilter::new().add_match("path=/token").unwrap()),
            ..MockOptions::default()
        };
        let store = MockStore::new(tape.clone(), options);
        let (one, two) = (replaying(1), replaying(2));
        // Scope 1 recorded its own token call: that one answers first,
        // then, used up, the shared one goes on answering.
        assert_eq!(
            answer(&store, Some(&one), "/token").unwrap(),
            "token recorded under 1"
        );
        assert_eq!(
            answer(&store, Some(&one), "/token").unwrap(),
            "token recorded under 1"
        );
        // Scope 2 never fetched a token when recorded; outside any scope
        // (a token fetched at startup) too.
        assert_eq!(
            answer(&store, Some(&two), "/token").unwrap(),
            "token recorded under 1"
        );
        assert_eq!(
            answer(&store, None, "/token").unwrap(),
            "token recorded under 1"
        );
        // Calls not marked shared stay in their scope.
        assert_eq!(answer(&store, Some(&two), "/stock").unwrap(), "stock of 2");
        assert_eq!(
            answer(&store, Some(&two), "/stock").unwrap_err(),
            MissReason::Exhausted { recorded: 1 }
        );
        assert_eq!(
            answer(&store, None, "/stock").unwrap_err(),
            MissReason::NoScope
        );
        let report = store.report();
        assert_eq!(
            (report.served, report.shared, report.global, report.missed),
            (5, 3, 0, 2)
        );

        // Without the mark, the same calls miss.
        let store = MockStore::new(tape, MockOptions::default());
        assert_eq!(
            answer(&store, None, "/token").unwrap_err(),
            MissReason::NoScope
        );
        assert_eq!(
            answer(&store, Some(&two), "/token").unwrap_err(),
            MissReason::NoMatch { recorded: 1 }
        );
    }

    #[test]
    fn the_global_pool_comes_after_the_shared_calls_and_is_counted() {
        let tape = vec![
            recorded(1, "/token", "token", 1),
            recorded(1, "/stock", "stock of 1", 2),
        ];
        let options = MockOptions {
            shared: Some(ExchangeFilter::new().add_match("path=/token").unwrap()),
            global: true,
            ..MockOptions::default()
        };
        let store = MockStore::new(tape, options);
        assert_eq!(answer(&store, None, "/token").unwrap(), "token");
        assert_eq!(answer(&store, None, "/stock").unwrap(), "stock of 1");
        let report = store.report();
        assert_eq!((report.served, report.shared, report.global), (2, 1, 1));
    }

    #[test]
    fn unlinked_calls_are_one_pool_in_recorded_order_after_the_scope() {
        let unlinked = |n: u8, path: &str, answer: &str| Exchange {
            parent_id: Vec::new(),
            ..recorded(n, path, answer, u64::from(n))
        };
        let tape = vec![
            unlinked(1, "/token", "token 1"),
            recorded(2, "/stock", "stock of 2", 2),
            unlinked(3, "/token", "token 2"),
            unlinked(4, "/config", "config"),
        ];
        let store = MockStore::new(tape, MockOptions::default());
        assert_eq!(store.unlinked_len(), 3);
        let two = replaying(2);
        // Any scope, or none, takes from the one pool, in recorded order.
        assert_eq!(answer(&store, Some(&two), "/token").unwrap(), "token 1");
        assert_eq!(answer(&store, None, "/token").unwrap(), "token 2");
        assert_eq!(
            answer(&store, Some(&replaying(9)), "/token").unwrap_err(),
            MissReason::Exhausted { recorded: 2 }
        );
        // The scope's own calls first.
        assert_eq!(answer(&store, Some(&two), "/stock").unwrap(), "stock of 2");
        assert_eq!(
            answer(&store, Some(&two), "/stock").unwrap_err(),
            MissReason::Exhausted { recorded: 1 }
        );
        let (_, pool) = store
            .choose(None, &key("/config"), "GET /config".into())
            .unwrap();
        assert_eq!(pool, Pool::Unlinked);
        let report = store.report();
        assert_eq!((report.served, report.unlinked, report.missed), (4, 3, 2));
    }
}
