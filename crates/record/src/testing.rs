//! What the recorder's tests share: calls through a recorder, recorders
//! over a memory sink, and what the sink holds at the close.

use std::sync::Arc;
use std::time::Duration;

use reprise_model::redact::Redactor;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Role, Sink};

use crate::metrics::Metrics;
use crate::recorder::{Recorder, RecorderThread};
use crate::rules::Rules;

/// A call through `recorder` to `path`, answered 200 with `body_len`
/// bytes, both bodies done; a downstream call of `parent` when given.
pub(crate) fn call_with(
    recorder: &Recorder,
    path: &str,
    body_len: usize,
    parent: Option<[u8; 16]>,
) -> [u8; 16] {
    let origin = Arc::new(crate::recording::Origin {
        service: "shop".into(),
        instance: String::new(),
        recorder: "proxy",
        role: if parent.is_some() {
            Role::Downstream
        } else {
            Role::Inbound
        },
        listener: "127.0.0.1:8080".into(),
        route: String::new(),
        scheme: "http",
        authority: "shop.example".into(),
        server_addr: String::new(),
        max_body: 1 << 20,
    });
    let uri: http::Uri = path.parse().unwrap_or_default();
    let headers = http::HeaderMap::new();
    let identity = crate::recording::Identity {
        id: reprise_model::id::new_id_bytes(),
        parent_id: parent,
        ..Default::default()
    };
    let recording = crate::recording::Recording::new(
        recorder.clone(),
        origin,
        identity,
        crate::head::RequestHead {
            method: &http::Method::GET,
            uri: &uri,
            version: http::Version::HTTP_11,
            headers: &headers,
        },
    );
    recording.response_head(http::StatusCode::OK, &headers);
    let request = recording.lend_body(crate::recording::Side::Request);
    recording.body_done(crate::recording::Side::Request, request);
    let mut response = recording.lend_body(crate::recording::Side::Response);
    if body_len > 0 {
        response.data(0, &bytes::Bytes::from(vec![b'x'; body_len]), 1 << 20);
    }
    recording.body_done(crate::recording::Side::Response, response);
    identity.id
}

pub(crate) fn call(recorder: &Recorder, path: &str) {
    call_with(recorder, path, 0, None);
}

/// A recorder over a memory sink, with `--match path=/keep/*` when
/// `matching` and the rate cap `max_rate`.
pub(crate) fn recorder(
    matching: bool,
    max_rate: Option<u32>,
) -> (
    reprise_model::MemorySink,
    Arc<Metrics>,
    Recorder,
    RecorderThread,
) {
    let sink = reprise_model::MemorySink::new();
    let (metrics, recorder, thread) = recorder_over(Box::new(sink.clone()), matching, max_rate);
    (sink, metrics, recorder, thread)
}

/// A recorder over `sink`, with the rules [`recorder`] takes.
pub(crate) fn recorder_over(
    sink: Box<dyn Sink>,
    matching: bool,
    max_rate: Option<u32>,
) -> (Arc<Metrics>, Recorder, RecorderThread) {
    let filter = if matching {
        ExchangeFilter::new()
            .add_match("path=/keep/*")
            .unwrap_or_else(|e| panic!("{e}"))
    } else {
        ExchangeFilter::new()
    };
    let rules = Rules {
        filter,
        max_rate,
        redactor: Redactor::default(),
        sample_rate: 1.0,
    };
    let metrics = Arc::new(Metrics::new());
    let started = Recorder::start(sink, rules, 100, Arc::clone(&metrics));
    let Ok((recorder, thread)) = started else {
        panic!("no recorder thread");
    };
    (metrics, recorder, thread)
}

/// Closes `thread`; `sink` then holds the calls to `paths`, in order,
/// and the counters say so, with `unmatched` refused by `--match`.
pub(crate) fn closed_with(
    thread: RecorderThread,
    recorder: &Recorder,
    (sink, metrics): (&reprise_model::MemorySink, &Metrics),
    want: &[&str],
    unmatched: u64,
) {
    assert_eq!(thread.close(recorder, Duration::from_secs(5)), Ok(()));
    assert_eq!(paths(sink), want);
    let stats = metrics.snapshot();
    assert_eq!(
        (stats.recorded, stats.unmatched, stats.dropped()),
        (want.len() as u64, unmatched, 0)
    );
    assert_eq!(metrics.queue_depth.get(), 0);
}

/// Each stored exchange's path, or a database call's first SQL.
pub(crate) fn paths(sink: &reprise_model::MemorySink) -> Vec<String> {
    sink.exchanges()
        .iter()
        .map(|e| match (&e.request, &e.db) {
            (Some(request), _) => request.path.clone(),
            (None, Some(db)) => db
                .statements
                .first()
                .map(|s| s.sql.clone())
                .unwrap_or_default(),
            (None, None) => String::new(),
        })
        .collect()
}

/// A PostgreSQL call with the statement `sql`, as a database listener
/// builds one, a child of `parent` when given.
pub(crate) fn database_call(parent: Option<[u8; 16]>, sql: &str) -> reprise_model::Exchange {
    reprise_model::Exchange {
        id: reprise_model::id::new_id_bytes().to_vec(),
        parent_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        role: Role::Downstream as i32,
        protocol: reprise_model::Protocol::Postgres as i32,
        db: Some(reprise_model::DbCall {
            statements: vec![reprise_model::SqlStatement {
                sql: sql.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}
