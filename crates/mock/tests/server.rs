//! `reprise_mock::server` in process, as `reprise test` runs it: a store
//! served on a listener the caller bound, real HTTP calls to it, its
//! counters per scope, a graceful stop and the `out` tape.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reprise_mock::server::{MockListener, MockServer, PlainConnections, ServerOptions};
use reprise_mock::{MockOptions, MockStore};
use reprise_model::{Exchange, Header, Request, Response, Role, display_id};

fn recorded(id: u8, parent: &[u8], path: &str, answer: &str) -> Exchange {
    Exchange {
        id: vec![id; 16],
        parent_id: parent.to_vec(),
        role: Role::Downstream as i32,
        recorded_at_ns: u64::from(id),
        request: Some(Request {
            method: "GET".into(),
            authority: "prices:8080".into(),
            path: path.into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers: vec![Header::new("content-type", "text/plain")],
            body: Bytes::from(answer.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_server_on_a_callers_listener_counts_per_scope_and_writes_out() {
    let store = MockStore::new(
        vec![
            recorded(11, &[1; 16], "/price", "10"),
            recorded(12, &[], "/token", "token"),
        ],
        MockOptions::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("made.tape");
    let options = ServerOptions {
        authority: Some("prices:8080".into()),
        out: Some(reprise_mock::OutStore::tape(&out)),
        ..ServerOptions::default()
    };
    let server = MockServer::new(Arc::new(store), options).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let handle = server
        .serve(
            vec![MockListener::new(listener)],
            Arc::new(PlainConnections::default()),
        )
        .await
        .unwrap();
    let addr = handle.listening()[0].addr;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str| {
        let request = http::Request::get(format!("http://{addr}{path}"))
            .header("x-reprise-replay", display_id(&[1; 16]))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(get("/price").await, (200, "10".to_string()));
    assert_eq!(get("/token").await, (200, "token".to_string()));
    assert_eq!(get("/price").await.0, 502);
    let stats = handle.stats();
    assert_eq!(stats.scopes.len(), 1);
    let scope = &stats.scopes[0];
    assert_eq!(scope.replay_of, vec![1; 16]);
    assert_eq!(
        (scope.calls, scope.served, scope.unlinked, scope.missed),
        (3, 2, 1, 1)
    );
    let stats = handle.stop().await.unwrap();
    assert_eq!(
        (
            stats.report.served,
            stats.report.unlinked,
            stats.report.missed
        ),
        (2, 1, 1)
    );
    assert_eq!(stats.written, 3);
    let made: Vec<Exchange> = reprise_tape::TapeReader::open(&out)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(made.len(), 3);
    assert!(made.iter().all(|e| e.parent_id == vec![1; 16]));
    // Stopped: the port takes no more calls.
    assert!(std::net::TcpStream::connect(addr).is_err());
}
