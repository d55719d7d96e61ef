//! The downstream calls of one replayed exchange compared with the calls
//! it made when it was recorded: missing calls, extra calls, and calls
//! whose request changed, each a [`Difference`] of that exchange (its
//! path starts `downstream[METHOD authority/path]`), so that ignore
//! rules, noise from a baseline, reports and exit codes treat them as
//! they treat the response's differences.
//!
//! Within one exchange's scope (the recorded calls whose `parent_id` is
//! its id, and the calls the new build made that the mock scoped to it),
//! a made call is paired:
//!
//! 1. with the recorded call the mock answered it with
//!    (`replay.recorded_id`);
//! 2. a miss (or a second use of one recorded call), with an unused
//!    recorded call of the same endpoint (method, authority and path with
//!    ids folded: [`reprise_model::endpoint_key`]), the one at the same
//!    position (`link.order`) if there is one, else the first;
//! 3. then with an unused recorded call of the same method at the same
//!    position: the same call to another path or authority.
//!
//! A paired call whose request differs is changed
//! ([`crate::pair::compare_request`]); a made call left over is extra, a
//! recorded call left over is missing. A call the mock answered with a
//! recorded call outside the scope (the pool of unlinked calls) is
//! counted, not charged to the exchange.
//!
//! Database and cache calls take part alike ([`crate::db`]): named
//! `pg LISTENER STATEMENT` or `redis LISTENER COMMAND KEY`, paired after a
//! miss by statement template or Redis command, compared by statement and
//! parameters or arguments as a request body is; transaction control and
//! connection set-up are left out on both sides.

use reprise_model::{Exchange, is_id_segment};
use serde::Serialize;
use serde_json::Value;

use crate::db;
use crate::json::{ChangeKind, Difference};
use crate::pair::{Rules, compare_request};

/// What the downstream comparison saw, across the exchanges compared
/// (before noise is taken out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DownstreamSummary {
    /// Recorded downstream calls of the exchanges compared.
    pub recorded: u64,
    /// Calls the new build made for the exchanges compared.
    pub made: u64,
    /// Made calls paired with the recorded call the mock answered them
    /// with.
    pub answered: u64,
    /// Made calls paired after the mock missed them: by endpoint, or by
    /// method and position.
    pub paired_after_miss: u64,
    /// Paired calls whose request differs.
    pub changed: u64,
    /// Recorded calls the new build never made.
    pub missing: u64,
    /// Made calls with no recorded counterpart.
    pub extra: u64,
    /// Made calls the mock could not answer (`flags.mock_miss`).
    pub mock_misses: u64,
    /// Made calls the pool of unlinked recorded calls served: calls in no
    /// exchange's scope, or answered by a recorded call outside their
    /// scope. Not charged to any exchange.
    pub pool_served: u64,
    /// Database calls left out on either side: transaction control and
    /// connection set-up (BEGIN, COMMIT, start-ups, session SET; Redis
    /// HELLO, AUTH, SELECT, CLIENT, PING, MULTI/EXEC...), which follow the
    /// client pool's state rather than the build. Not in `recorded` or
    /// `made`.
    pub session_calls: u64,
    /// Recorded downstream calls linked to no inbound exchange.
    pub unlinked_recorded: u64,
    /// Made calls scoped to an exchange that was not compared (not
    /// replayed, failed, or outside the recording).
    pub outside_compared: u64,
}

/// A call's position among its scope's calls: `link.order`, then its
/// start.
pub(crate) fn position(call: &Exchange) -> (u32, u64) {
    (
        call.link.as_ref().map_or(u32::MAX, |l| l.order),
        call.recorded_at_ns,
    )
}

/// `METHOD authority/path`, the path without its query; with `fold`, id
/// segments as `{id}` (the endpoint a report counts by). A database
/// call's name is [`db::call_name`].
fn call_name(call: &Exchange, fold: bool) -> String {
    if db::is_db(call) {
        return db::call_name(call, fold);
    }
    let Some(request) = &call.request else {
        return "(no request)".to_string();
    };
    let path = request.path_only();
    let path = if fold {
        path.split('/')
            .map(|s| if is_id_segment(s) { "{id}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    } else {
        path.to_string()
    };
    format!("{} {}{}", request.method, request.authority, path)
}

/// Whether a report's path pattern names a downstream call's difference.
pub fn is_downstream_pattern(pattern: &str) -> bool {
    pattern.starts_with("downstream[")
}

/// A downstream difference in words: `call missing: GET inventory/items/3`,
/// `new call: POST payments.example/refund`, or the call and the field
/// (`POST payments.example/charge: $.amount`); `None` for a path that is
/// not a downstream call's.
pub fn describe(path: &str, kind: ChangeKind) -> Option<String> {
    let rest = path.strip_prefix("downstream[")?;
    match rest.split_once("].request.") {
        Some((call, field)) => {
            let field = field.strip_prefix("body:").unwrap_or(field);
            Some(format!("{call}: {field}"))
        }
        None => {
            let call = rest.strip_suffix(']').unwrap_or(rest);
            Some(match kind {
                ChangeKind::Removed => format!("call missing: {call}"),
                ChangeKind::Added => format!("new call: {call}"),
                ChangeKind::Changed | ChangeKind::TypeChanged => call.to_string(),
            })
        }
    }
}

/// A whole call missing (`kind` Removed) or extra (Added).
fn whole_call(call: &Exchange, kind: ChangeKind) -> Difference {
    let name = call_name(call, false);
    let (recorded, replayed) = match kind {
        ChangeKind::Removed => (Some(Value::from(name.clone())), None),
        _ => (None, Some(Value::from(name.clone()))),
    };
    Difference {
        path: format!("downstream[{name}]"),
        pattern: format!("downstream[{}]", call_name(call, true)),
        kind,
        recorded,
        replayed,
        detail: None,
    }
}

/// What pairs a call after a miss: its endpoint (`METHOD
/// authority/path` with ids folded; a database call's template or a
/// Redis command, [`crate::db::endpoint_key`]).
fn pairing_key(call: &Exchange) -> String {
    if db::is_db(call) {
        db::endpoint_key(call)
    } else {
        call_name(call, true)
    }
}

/// What pairs a call at the same position when nothing else does: its
/// method, or a database call's verb.
fn verb(call: &Exchange) -> Option<String> {
    if db::is_db(call) {
        Some(db::verb(call))
    } else {
        call.request.as_ref().map(|r| r.method.to_ascii_uppercase())
    }
}

/// Each call's position with the calls left out before it not counted:
/// a pool that opens one more transaction does not shift the calls after.
fn positions(calls: &[&Exchange], left_out: &[u32]) -> Vec<u32> {
    calls
        .iter()
        .map(|c| {
            let order = position(c).0;
            if order == u32::MAX {
                return order;
            }
            let before = left_out.iter().filter(|o| **o < order).count();
            order.saturating_sub(u32::try_from(before).unwrap_or(u32::MAX))
        })
        .collect()
}

/// The calls that take part, their positions, and how many were left out
/// ([`db::is_session_call`]).
fn taking_part(calls: &[Exchange]) -> (Vec<&Exchange>, Vec<u32>, u64) {
    let (out, kept): (Vec<&Exchange>, Vec<&Exchange>) =
        calls.iter().partition(|c| db::is_session_call(c));
    let left_out: Vec<u32> = out.iter().map(|c| position(c).0).collect();
    let order = positions(&kept, &left_out);
    (kept, order, out.len() as u64)
}

/// The differences of one paired call's request, by path.
fn compare_pair(was: &Exchange, now: &Exchange, rules: &Rules) -> Vec<Difference> {
    match (db::is_db(was), db::is_db(now)) {
        (false, false) => compare_request(was, now, rules),
        (true, true) => db::compare(was, now, rules)
            .into_iter()
            .map(|d| Difference {
                path: format!("body:{}", d.path),
                pattern: format!("body:{}", d.pattern),
                ..d
            })
            .collect(),
        // The mock answered a database call with an HTTP call's answer
        // (or the reverse): the protocol changed.
        _ => {
            let protocol = |e: &Exchange| Value::from(format!("{:?}", e.protocol()));
            vec![Difference {
                path: "protocol".into(),
                pattern: "protocol".into(),
                kind: ChangeKind::Changed,
                recorded: Some(protocol(was)),
                replayed: Some(protocol(now)),
                detail: None,
            }]
        }
    }
}

/// Compares the calls the new build made in one exchange's scope (`made`)
/// with the calls recorded in it (`recorded`), both in the order they were
/// made (by `link.order`, then start), by `rules`; counts what it saw in
/// `summary`. Database calls that control a transaction or set a
/// connection up are left out on both sides: start-ups, BEGIN, COMMIT, session SET,
/// Redis HELLO, AUTH, SELECT, CLIENT, PING, MULTI, EXEC...
pub fn compare_calls(
    recorded: &[Exchange],
    made: &[Exchange],
    rules: &Rules,
    summary: &mut DownstreamSummary,
) -> Vec<Difference> {
    let (recorded, recorded_order, out_recorded) = taking_part(recorded);
    let (made, made_order, out_made) = taking_part(made);
    summary.session_calls += out_recorded + out_made;
    summary.recorded += recorded.len() as u64;
    summary.made += made.len() as u64;
    let mut used = vec![false; recorded.len()];
    // (recorded, made) pairs, and made calls not paired yet.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut left: Vec<usize> = Vec::new();
    for (j, call) in made.iter().enumerate() {
        if call.flags.as_ref().is_some_and(|f| f.mock_miss) {
            summary.mock_misses += 1;
        }
        let answered_by = call
            .replay
            .as_ref()
            .map(|r| r.recorded_id.as_slice())
            .filter(|id| !id.is_empty());
        let Some(id) = answered_by else {
            left.push(j);
            continue;
        };
        match recorded.iter().position(|r| r.id == id) {
            Some(i) if !used[i] => {
                used[i] = true;
                pairs.push((i, j));
                summary.answered += 1;
            }
            // The mock answered twice with one recorded call: the second
            // is paired as a miss is.
            Some(_) => left.push(j),
            None => summary.pool_served += 1,
        }
    }
    let mut extra = Vec::new();
    // Keys read once (a database call's means normalising its SQL), and
    // only when a call is left to pair.
    let (keys, verbs): (Vec<String>, Vec<Option<String>>) = if left.is_empty() {
        Default::default()
    } else {
        recorded.iter().map(|c| (pairing_key(c), verb(c))).unzip()
    };
    for j in left {
        let call = made[j];
        let key = pairing_key(call);
        let call_verb = verb(call);
        let order = made_order[j];
        let unused = |i: &usize| !used[*i];
        let same_endpoint: Vec<usize> = (0..recorded.len())
            .filter(unused)
            .filter(|&i| keys.get(i) == Some(&key))
            .collect();
        let found = same_endpoint
            .iter()
            .copied()
            .find(|&i| recorded_order[i] == order)
            .or_else(|| same_endpoint.first().copied())
            .or_else(|| {
                (0..recorded.len()).filter(unused).find(|&i| {
                    recorded_order[i] == order
                        && order != u32::MAX
                        && verbs.get(i) == Some(&call_verb)
                })
            });
        match found {
            Some(i) => {
                used[i] = true;
                pairs.push((i, j));
                summary.paired_after_miss += 1;
            }
            None => extra.push(j),
        }
    }
    pairs.sort_unstable();
    let mut out = Vec::new();
    for (i, j) in pairs {
        let (was, now) = (recorded[i], made[j]);
        let differences = compare_pair(was, now, rules);
        if differences.is_empty() {
            continue;
        }
        summary.changed += 1;
        let (path, pattern) = (call_name(was, false), call_name(was, true));
        let inner = |p: &str| {
            if p.starts_with('$') {
                format!("body:{p}")
            } else {
                p.to_string()
            }
        };
        out.extend(differences.into_iter().map(|d| Difference {
            path: format!("downstream[{path}].request.{}", inner(&d.path)),
            pattern: format!("downstream[{pattern}].request.{}", inner(&d.pattern)),
            ..d
        }));
    }
    for (i, call) in recorded.iter().enumerate() {
        if !used[i] {
            summary.missing += 1;
            out.push(whole_call(call, ChangeKind::Removed));
        }
    }
    for j in extra {
        summary.extra += 1;
        out.push(whole_call(made[j], ChangeKind::Added));
    }
    out
}

#[cfg(test)]
mod tests {
    use reprise_model::{Flags, Header, Link, LinkKind, Replay, Request, Role};

    use super::*;

    /// A recorded downstream call: `METHOD authority/path` with a JSON
    /// body, at position `order` in scope `parent`.
    pub(crate) fn call(id: u8, parent: u8, order: u32, line: &str, body: &str) -> Exchange {
        let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
        let (authority, path) = target.split_once('/').unwrap_or((target, ""));
        Exchange {
            id: vec![id; 16],
            parent_id: if parent == 0 {
                Vec::new()
            } else {
                vec![parent; 16]
            },
            role: Role::Downstream as i32,
            link: Some(Link {
                kind: LinkKind::Trace as i32,
                order,
            }),
            request: Some(Request {
                method: method.into(),
                scheme: "https".into(),
                authority: authority.into(),
                path: format!("/{path}"),
                headers: vec![
                    Header::new("content-type", "application/json"),
                    Header::new("traceparent", format!("00-{id:032x}-{id:016x}-01")),
                ],
                body: body.as_bytes().to_vec().into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What the mock records of a call the new build made: answered by
    /// recorded call `answered_by` (0: a miss).
    pub(crate) fn made_call(
        answered_by: u8,
        parent: u8,
        order: u32,
        line: &str,
        body: &str,
    ) -> Exchange {
        let mut e = call(100 + order as u8, parent, order, line, body);
        e.replay = Some(Replay {
            recorded_id: if answered_by == 0 {
                Vec::new()
            } else {
                vec![answered_by; 16]
            },
            ..Default::default()
        });
        e.flags = Some(Flags {
            mock_miss: answered_by == 0,
            ..Default::default()
        });
        e
    }

    fn paths(d: &[Difference]) -> Vec<(&str, ChangeKind)> {
        d.iter().map(|d| (d.path.as_str(), d.kind)).collect()
    }

    #[test]
    fn the_same_calls_differ_in_nothing() {
        let recorded = [
            call(1, 9, 0, "GET inventory/items/3", ""),
            call(2, 9, 1, "POST payments.example/charge", r#"{"amount":100}"#),
        ];
        let made = [
            made_call(1, 9, 0, "GET inventory/items/3", ""),
            made_call(2, 9, 1, "POST payments.example/charge", r#"{"amount":100}"#),
        ];
        let mut s = DownstreamSummary::default();
        assert!(compare_calls(&recorded, &made, &Rules::default(), &mut s).is_empty());
        assert_eq!((s.recorded, s.made, s.answered, s.changed), (2, 2, 2, 0));
    }

    #[test]
    fn a_changed_request_is_reported_by_its_field_path() {
        let recorded = [call(
            2,
            9,
            0,
            "POST payments.example/charge",
            r#"{"amount":100,"currency":"EUR"}"#,
        )];
        let made = [made_call(
            2,
            9,
            0,
            "POST payments.example/charge",
            r#"{"amount":110,"currency":"EUR"}"#,
        )];
        let mut s = DownstreamSummary::default();
        let d = compare_calls(&recorded, &made, &Rules::default(), &mut s);
        assert_eq!(
            paths(&d),
            [(
                "downstream[POST payments.example/charge].request.body:$.amount",
                ChangeKind::Changed
            )]
        );
        assert_eq!(
            (d[0].recorded.clone(), d[0].replayed.clone()),
            (Some(Value::from(100)), Some(Value::from(110)))
        );
        assert_eq!(
            describe(&d[0].path, d[0].kind).as_deref(),
            Some("POST payments.example/charge: $.amount")
        );
        assert_eq!(s.changed, 1);
    }

    #[test]
    fn missing_and_extra_calls_are_named() {
        let recorded = [
            call(1, 9, 0, "GET inventory/items/3", ""),
            call(2, 9, 1, "POST payments.example/charge", r#"{"amount":100}"#),
        ];
        let made = [
            made_call(2, 9, 0, "POST payments.example/charge", r#"{"amount":100}"#),
            made_call(0, 9, 1, "POST payments.example/refund", r#"{"amount":100}"#),
        ];
        let mut s = DownstreamSummary::default();
        let d = compare_calls(&recorded, &made, &Rules::default(), &mut s);
        assert_eq!(
            paths(&d),
            [
                ("downstream[GET inventory/items/3]", ChangeKind::Removed),
                (
                    "downstream[POST payments.example/refund]",
                    ChangeKind::Added
                ),
            ]
        );
        assert_eq!(d[0].pattern, "downstream[GET inventory/items/{id}]");
        assert_eq!(
            describe(&d[0].path, d[0].kind).as_deref(),
            Some("call missing: GET inventory/items/3")
        );
        assert_eq!(
            describe(&d[1].path, d[1].kind).as_deref(),
            Some("new call: POST payments.example/refund")
        );
        assert_eq!((s.missing, s.extra, s.mock_misses), (1, 1, 1));
    }

    #[test]
    fn a_miss_pairs_by_endpoint_template_then_by_method_and_position() {
        // Recorded: items/3 then items/4, and a charge. The new build asks
        // for items/5 first (a miss: another id) and the charge at v2.
        let recorded = [
            call(1, 9, 0, "GET inventory/items/3", ""),
            call(2, 9, 1, "GET inventory/items/4", ""),
            call(
                3,
                9,
                2,
                "POST payments.example/v1/charge",
                r#"{"amount":1}"#,
            ),
        ];
        let made = [
            made_call(2, 9, 1, "GET inventory/items/4", ""),
            made_call(0, 9, 0, "GET inventory/items/5", ""),
            made_call(
                0,
                9,
                2,
                "POST payments.example/v2/charge",
                r#"{"amount":1}"#,
            ),
        ];
        let mut s = DownstreamSummary::default();
        let d = compare_calls(&recorded, &made, &Rules::default(), &mut s);
        assert_eq!(
            paths(&d),
            [
                (
                    "downstream[GET inventory/items/3].request.path",
                    ChangeKind::Changed
                ),
                (
                    "downstream[POST payments.example/v1/charge].request.path",
                    ChangeKind::Changed
                ),
            ]
        );
        assert_eq!(
            d[0].pattern,
            "downstream[GET inventory/items/{id}].request.path"
        );
        assert_eq!(d[0].replayed, Some(Value::from("/items/5")));
        assert_eq!((s.answered, s.paired_after_miss, s.extra), (1, 2, 0));
        // Another method at that position is not the same call.
        let made = [made_call(0, 9, 0, "DELETE payments.example/v1/charge", "")];
        let recorded = [call(3, 9, 0, "POST payments.example/v1/charge", "{}")];
        let d = compare_calls(&recorded, &made, &Rules::default(), &mut s);
        assert_eq!(
            d.iter().map(|d| d.kind).collect::<Vec<_>>(),
            [ChangeKind::Removed, ChangeKind::Added]
        );
    }

    #[test]
    fn ignore_rules_apply_to_downstream_requests() {
        let recorded = [call(
            2,
            9,
            0,
            "POST payments.example/charge",
            r#"{"amount":100,"nonce":"a"}"#,
        )];
        let mut now = made_call(
            2,
            9,
            0,
            "POST payments.example/charge",
            r#"{"amount":100,"nonce":"b"}"#,
        );
        if let Some(r) = now.request.as_mut() {
            r.headers.push(Header::new("idempotency-key", "k2"));
            r.headers.push(Header::new("host", "elsewhere"));
        }
        let made = [now];
        let mut s = DownstreamSummary::default();
        let d = compare_calls(&recorded, &made, &Rules::default(), &mut s);
        assert_eq!(
            paths(&d),
            [
                (
                    "downstream[POST payments.example/charge].request.header:idempotency-key",
                    ChangeKind::Added
                ),
                (
                    "downstream[POST payments.example/charge].request.body:$.nonce",
                    ChangeKind::Changed
                ),
            ],
            "traceparent and host are not compared"
        );
        let mut rules = Rules::default();
        rules.ignore_header("Idempotency-Key");
        rules.endpoints.push(crate::EndpointRules {
            endpoint: "POST payments.example/charge".into(),
            ignore: vec![reprise_model::redact::JsonPath::parse("$.nonce").unwrap()],
            unordered: Vec::new(),
        });
        assert!(compare_calls(&recorded, &made, &rules, &mut s).is_empty());
        let mut global = Rules::default();
        global.ignore("$.nonce").unwrap();
        global.ignore_header("idempotency-key");
        assert!(compare_calls(&recorded, &made, &global, &mut s).is_empty());
    }

    #[test]
    fn calls_the_pool_answered_are_counted_not_charged() {
        let recorded = [call(1, 9, 0, "GET inventory/items/3", "")];
        // Answered by recorded call 7, which is not in this scope (an
        // unlinked call of the pool).
        let made = [
            made_call(1, 9, 0, "GET inventory/items/3", ""),
            made_call(7, 9, 1, "GET config/flags", ""),
        ];
        let mut s = DownstreamSummary::default();
        assert!(compare_calls(&recorded, &made, &Rules::default(), &mut s).is_empty());
        assert_eq!((s.pool_served, s.extra, s.made), (1, 0, 2));
    }

    #[test]
    fn query_parameters_are_compared_by_name() {
        let recorded = [call(1, 9, 0, "GET search/q?term=tea&limit=10", "")];
        let made = [made_call(1, 9, 0, "GET search/q?limit=20&term=tea&x=1", "")];
        let mut s = DownstreamSummary::default();
        let d = compare_calls(&recorded, &made, &Rules::default(), &mut s);
        assert_eq!(
            paths(&d),
            [
                (
                    "downstream[GET search/q].request.query:limit",
                    ChangeKind::Changed
                ),
                (
                    "downstream[GET search/q].request.query:x",
                    ChangeKind::Added
                ),
            ]
        );
    }

    #[test]
    fn a_grpc_call_is_compared_by_its_request_messages() {
        use reprise_model::{Direction, StreamMessage};
        // Field 1 (text) "pen", field 2 (varint) qty.
        let message = |qty: u8| StreamMessage {
            direction: Direction::Request as i32,
            data: vec![0x0a, 3, b'p', b'e', b'n', 0x10, qty].into(),
            ..Default::default()
        };
        let grpc = |mut e: Exchange, qty: u8| {
            if let Some(r) = e.request.as_mut() {
                r.headers = vec![Header::new("content-type", "application/grpc")];
            }
            e.messages = vec![message(qty)];
            e
        };
        let line = "POST inventory.internal/shop.Inventory/Reserve";
        let recorded = [grpc(call(1, 9, 0, line, ""), 1)];
        let same = [grpc(made_call(1, 9, 0, line, ""), 1)];
        let mut s = DownstreamSummary::default();
        assert!(compare_calls(&recorded, &same, &Rules::default(), &mut s).is_empty());
        let more = [grpc(made_call(1, 9, 0, line, ""), 2)];
        let d = compare_calls(&recorded, &more, &Rules::default(), &mut s);
        assert_eq!(
            paths(&d),
            [(
                r#"downstream[POST inventory.internal/shop.Inventory/Reserve].request.body:$.messages[0]["2"]"#,
                ChangeKind::Changed
            )]
        );
    }
}
