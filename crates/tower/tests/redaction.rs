//! The layers redact as `reprise record` does (the same rules, from
//! `Config` or `REPRISE_*`), and the mock store redacts calls before
//! matching them. Real servers on 127.0.0.1, real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http_body_util::BodyExt;
use reprise_model::{Exchange, Role};
use reprise_tower::{Config, MockOptions, MockStore, Mode, Reprise};
use support::*;
use tower::ServiceExt;

const SECRETS: [&str; 3] = ["T0K-ACCESS", "T0K-SESSION", "4242-CARD"];

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Records one order with secrets in its query and one checkout whose
/// JSON body is sent as text/plain, with the rules `vars` give.
async fn record(tape: &std::path::Path, vars: &[(&str, &str)]) -> Vec<Exchange> {
    let mut vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.push(("REPRISE_MODE".into(), "record".into()));
    vars.push(("REPRISE_TAPE".into(), tape.display().to_string()));
    let config =
        Config::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .unwrap();
    let (inventory_addr, inventory_task) = inventory().await;
    let reprise = Reprise::start(config).unwrap();
    let (shop_addr, shop_task) = serve(shop(&reprise, &inventory_addr.to_string())).await;
    let (status, _, answer) = get_with(
        shop_addr,
        "/order/pen?times=1&access_token=T0K-ACCESS&session_id=T0K-SESSION",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer:?}");
    let checkout = http::Request::post(format!("http://{shop_addr}/checkout"))
        .header("content-type", "text/plain")
        .body(body(
            r#"{"items":[{"sku":"pen","n":2}],"card":"4242-CARD"}"#,
        ))
        .unwrap();
    let (status, _, answer) = send(checkout).await;
    assert_eq!(status, 200, "{answer:?}");
    shop_task.abort();
    inventory_task.abort();
    shut(reprise).await;
    read_tape(tape)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_redact_queries_and_json_by_content_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("layers.tape");
    let exchanges = record(
        &tape,
        &[
            ("REPRISE_REDACT_QUERY", "session_id"),
            ("REPRISE_REDACT_JSON", "$..card"),
        ],
    )
    .await;
    assert_eq!(exchanges.len(), 4, "two inbound calls, two downstream");
    for exchange in &exchanges {
        let stored = reprise_model::codec::encode_to_vec(exchange);
        for secret in SECRETS {
            assert!(!holds(&stored, secret), "{secret} in {exchange:?}");
        }
    }
    let order = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path.starts_with("/order"))
        .unwrap();
    assert_eq!(
        order.request.as_ref().unwrap().path,
        "/order/pen?times=1&access_token=%5Bredacted%5D&session_id=%5Bredacted%5D"
    );
    assert_eq!(
        order.flags.as_ref().unwrap().redactions,
        ["request.query:access_token", "request.query:session_id"]
    );
    // Without the defaults and the rules: kept as sent.
    let clear = dir.path().join("clear.tape");
    let exchanges = record(&clear, &[("REPRISE_NO_DEFAULT_REDACTION", "1")]).await;
    assert!(
        exchanges
            .iter()
            .any(|e| e.request.as_ref().unwrap().path.contains("T0K-ACCESS"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_store_matches_a_call_whose_token_was_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("mocked.tape");
    let exchanges = record(&tape, &[]).await;
    let store = std::sync::Arc::new(MockStore::new(
        exchanges.into_iter().filter(|e| e.role() == Role::Inbound),
        MockOptions {
            inbound: true,
            ignore_authority: true,
            ..MockOptions::default()
        },
    ));
    let call = |query: &str| {
        http::Request::get(format!("/order/pen?times=1&{query}"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap()
    };
    let answer = reprise_mock::MockService::new(std::sync::Arc::clone(&store))
        .authority("shop")
        .oneshot(call("access_token=ANOTHER&session_id=T0K-SESSION"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let served = answer.into_body().collect().await.unwrap().to_bytes();
    assert!(holds(&served, "\"sku\":\"pen\""), "{served:?}");
    // With the rules off, the token is compared as sent: a miss.
    let strict = std::sync::Arc::new(MockStore::new(
        read_tape(&tape)
            .into_iter()
            .filter(|e| e.role() == Role::Inbound),
        MockOptions {
            inbound: true,
            ignore_authority: true,
            redactor: reprise_model::redact::Redactor::none(),
            ..MockOptions::default()
        },
    ));
    let answer = reprise_mock::MockService::new(strict)
        .authority("shop")
        .oneshot(call("access_token=ANOTHER&session_id=T0K-SESSION"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
}

#[test]
fn bad_rules_name_their_variable() {
    for (var, value) in [
        ("REPRISE_REDACT_QUERY", "a=b"),
        ("REPRISE_REDACT_FORM", "x&y"),
        ("REPRISE_REDACT_HEADERS", "bad name"),
        ("REPRISE_REDACT_JSON", "card"),
    ] {
        let error = Config::from_vars(|name| match name {
            "REPRISE_MODE" => Some("off".into()),
            n if n == var => Some(value.into()),
            _ => None,
        })
        .and_then(|config| Reprise::start(config).map(|_| ()))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(var) && error.contains(value),
            "{var}: {error}"
        );
    }
    let _ = Mode::Off;
}
