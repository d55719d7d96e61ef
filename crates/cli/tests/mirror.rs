//! `reprise mirror` end to end: the real binary in front of a primary
//! service of the test's own, copying every call to a shadow (another
//! build of it, or one that is slow or gone), stopped by a real signal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::*;

/// What a shadow saw: each call's path and its `x-reprise-replay`.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A price service: `GET /price?sku=S` says `{"sku":S,"price":P}`, P 10,
/// or `b_price` for sku b (another build); each call is noted in `seen`
/// and answered after `delay`.
async fn start_prices(b_price: u32, delay: Duration, seen: Seen) -> SocketAddr {
    use axum::extract::{Query, Request};
    let app = axum::Router::new().route(
        "/price",
        axum::routing::get(
            move |Query(q): Query<std::collections::HashMap<String, String>>, request: Request| {
                let seen = Arc::clone(&seen);
                async move {
                    let replay = request
                        .headers()
                        .get("x-reprise-replay")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    // A staging credential given to the shadow only.
                    let replay = match request.headers().get("x-staging") {
                        Some(v) => format!("{replay} {}", v.to_str().unwrap()),
                        None => replay,
                    };
                    seen.lock()
                        .unwrap()
                        .push((request.uri().path_and_query().unwrap().to_string(), replay));
                    tokio::time::sleep(delay).await;
                    let sku = q.get("sku").cloned().unwrap_or_default();
                    let price = if sku == "b" { b_price } else { 10 };
                    axum::Json(serde_json::json!({"sku": sku, "price": price}))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_a_copy_of_every_call_and_the_comparison_finds_its_change() {
    let (primary_seen, shadow_seen) = (Seen::default(), Seen::default());
    let primary = start_prices(10, Duration::ZERO, Arc::clone(&primary_seen)).await;
    let shadow = start_prices(12, Duration::ZERO, Arc::clone(&shadow_seen)).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "primary.tape");
    let shadow_tape = dir.path().join("shadow.tape");
    let report = dir.path().join("diff.json");
    let mirror = Recorder::mirror(
        &format!("http://{primary}"),
        &format!("http://{shadow}"),
        &tape,
        &[
            "--compare",
            "--shadow-out",
            s(&shadow_tape),
            "--diff-json",
            s(&report),
            "--set-header",
            "x-staging: yes",
        ],
    );
    // Clients get the primary's answers, over HTTP/1.1 and h2c.
    for sku in ["a", "b", "c"] {
        for flags in [&[][..], &["--http2-prior-knowledge"][..]] {
            let mut args = flags.to_vec();
            let url = mirror.url(&format!("/price?sku={sku}"));
            args.push(&url);
            let (body, _) = curl(&args);
            assert_eq!(body, format!(r#"{{"sku":"{sku}","price":10}}"#));
        }
    }
    // The shadow gets each call once, named by the recorded exchange.
    support::eventually("the shadow has every call", 20, || {
        shadow_seen.lock().unwrap().len() == 6
    });
    let (code, stderr) = mirror.stop("-INT");
    assert_eq!(code, 1, "a changed price is a regression: {stderr}");
    assert!(
        stderr.contains("shadow: 6 calls copied to") && stderr.contains("6 answered, 0 failed"),
        "{stderr}"
    );
    assert_eq!(primary_seen.lock().unwrap().len(), 6);
    assert!(
        primary_seen
            .lock()
            .unwrap()
            .iter()
            .all(|(_, r)| r.is_empty()),
        "the primary got a shadow's header"
    );
    let recorded = read_tape(&tape);
    assert_eq!(recorded.len(), 6);
    let mut copied: Vec<(String, String)> = shadow_seen.lock().unwrap().clone();
    let mut want: Vec<(String, String)> = recorded
        .iter()
        .map(|e| {
            (
                e.request.as_ref().unwrap().path.clone(),
                format!("{} yes", e.id_hex()),
            )
        })
        .collect();
    copied.sort();
    want.sort();
    assert_eq!(copied, want);
    // What the shadow said, linked to the recorded calls.
    let answered = read_tape(&shadow_tape);
    assert_eq!(answered.len(), 6);
    // The comparison: the b calls regressed in $.price, the rest are identical.
    let diff: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (&diff["pairs"], &diff["identical"]),
        (&6.into(), &4.into()),
        "{diff:#}"
    );
    assert!(diff.to_string().contains("$.price"), "{diff:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_absent_shadow_never_touches_the_primary() {
    let primary = start_prices(10, Duration::ZERO, Seen::default()).await;
    let slow = start_prices(10, Duration::from_secs(3), Seen::default()).await;
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    for (shadow, failure) in [(slow, "timeout"), (gone, "connect")] {
        let tape = temp_tape(&dir, &format!("{failure}.tape"));
        let mirror = Recorder::mirror(
            &format!("http://{primary}"),
            &format!("http://{shadow}"),
            &tape,
            &["--shadow-timeout", "500ms"],
        );
        for i in 0..5 {
            let started = Instant::now();
            let (body, _) = curl(&[&mirror.url(&format!("/price?sku=s{i}"))]);
            assert_eq!(body, format!(r#"{{"sku":"s{i}","price":10}}"#));
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "an answer took {:?} with a {failure} shadow",
                started.elapsed()
            );
        }
        let (code, stderr) = mirror.stop("-TERM");
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains("5 calls copied") && stderr.contains("0 answered, 5 failed"),
            "{failure}: {stderr}"
        );
        assert!(stderr.contains(&format!("failed ({failure})")), "{stderr}");
        assert_eq!(read_tape(&tape).len(), 5);
    }
}

#[test]
fn bad_arguments_are_one_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("t.tape");
    let shadow_tape = dir.path().join("shadow.tape");
    let base = [
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:1",
        "--out",
        s(&tape),
    ];
    let shadow = "http://127.0.0.1:1";
    // The --out tape named another way.
    let same_tape = format!("{}/./t.tape", dir.path().display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--shadow", "ftp://127.0.0.1:1"], "--shadow"),
        (
            vec!["--shadow", shadow, "--shadow-timeout", "0s"],
            "--shadow-timeout must be above 0",
        ),
        (
            vec!["--shadow", shadow, "--shadow-timeout", "soon"],
            "--shadow-timeout \"soon\"",
        ),
        (
            vec!["--shadow", shadow, "--set-header", "no colon"],
            "no colon",
        ),
        (vec!["--shadow", shadow, "--sample", "2"], "--sample"),
        (vec![], "--shadow <URL>"),
        (
            vec!["--shadow", shadow, "--diff-json", "x.json"],
            "--compare",
        ),
        (
            vec!["--shadow", shadow, "--junit", "j.xml"],
            "go with --compare",
        ),
        (
            vec!["--shadow", shadow, "--compare", "--max-memory", "lots"],
            "--max-memory",
        ),
        (
            vec!["--shadow", shadow, "--shadow-out", s(&tape)],
            "--shadow-out and --out are the same tape",
        ),
        (
            vec!["--shadow", shadow, "--shadow-out", &same_tape],
            "--shadow-out and --out are the same tape",
        ),
        (
            vec![
                "--shadow",
                "https://127.0.0.1:1",
                "--shadow-ca",
                "no-such-ca.pem",
            ],
            "no-such-ca.pem",
        ),
        (
            vec![
                "--shadow",
                "http://no-such-host.invalid:80",
                "--shadow-out",
                s(&shadow_tape),
            ],
            "--shadow http://no-such-host.invalid:80",
        ),
    ];
    for (args, want) in cases {
        let mut all = base.to_vec();
        all.extend(&args);
        let out = reprise(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!tape.exists(), "{args:?} left a tape behind");
        assert!(!shadow_tape.exists(), "{args:?} left a shadow tape behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_tape_sends_only_the_new_calls() {
    let shadow_seen = Seen::default();
    let primary = start_prices(10, Duration::ZERO, Seen::default()).await;
    let shadow = start_prices(10, Duration::ZERO, Arc::clone(&shadow_seen)).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "primary.tape");
    let recorder = Recorder::start(&format!("http://{primary}"), &tape, &[]);
    for i in 0..3 {
        curl(&[&recorder.url(&format!("/price?sku=old{i}"))]);
    }
    recorder.stop_cleanly("-INT");
    // Nothing copied, nothing compared: too little to be a pass (exit 4,
    // docs/cli.md's exit-code table).
    let mirror = Recorder::mirror(
        &format!("http://{primary}"),
        &format!("http://{shadow}"),
        &tape,
        &["--append", "--compare"],
    );
    let (code, stderr) = mirror.stop("-INT");
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("nothing to compare"), "{stderr}");
    // The new call is copied and compared; the old ones are neither.
    let report = dir.path().join("diff.json");
    let mirror = Recorder::mirror(
        &format!("http://{primary}"),
        &format!("http://{shadow}"),
        &tape,
        &["--append", "--compare", "--diff-json", s(&report)],
    );
    curl(&[&mirror.url("/price?sku=new")]);
    support::eventually("the new call reaches the shadow", 20, || {
        !shadow_seen.lock().unwrap().is_empty()
    });
    let stderr = mirror.stop_cleanly("-INT");
    assert!(stderr.contains("shadow: 1 calls copied"), "{stderr}");
    let seen: Vec<String> = shadow_seen
        .lock()
        .unwrap()
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    assert_eq!(seen, ["/price?sku=new"]);
    assert_eq!(read_tape(&tape).len(), 4);
    let diff: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (&diff["pairs"], &diff["identical"], &diff["regressed"]),
        (&1.into(), &1.into(), &0.into()),
        "{diff:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_shadow_is_trusted_by_its_ca_only() {
    let shadow_seen = Seen::default();
    let primary = start_prices(10, Duration::ZERO, Seen::default()).await;
    let shadow = start_prices(10, Duration::ZERO, Arc::clone(&shadow_seen)).await;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&key_file, key.signing_key.serialize_pem()).unwrap();
    // The shadow behind TLS: a reprise record with a certificate of its own.
    let front = Recorder::start(
        &format!("http://{shadow}"),
        &temp_tape(&dir, "front.tape"),
        &["--tls-cert", s(&cert), "--tls-key", s(&key_file)],
    );
    let https = format!("https://localhost:{}", front.addr.port());
    for (trust, answered) in [(vec!["--shadow-ca", s(&cert)], 1), (vec![], 0)] {
        let tape = temp_tape(&dir, &format!("trust-{answered}.tape"));
        let mirror = Recorder::mirror(&format!("http://{primary}"), &https, &tape, &trust);
        let (body, _) = curl(&[&mirror.url("/price?sku=t")]);
        assert_eq!(body, r#"{"sku":"t","price":10}"#);
        let stderr = mirror.stop_cleanly("-INT");
        assert!(
            stderr.contains(&format!("1 calls copied to {https}"))
                && stderr.contains(&format!("{answered} answered")),
            "{trust:?}: {stderr}"
        );
        if answered == 0 {
            assert!(stderr.contains("failed (tls)"), "{stderr}");
        }
    }
    assert_eq!(shadow_seen.lock().unwrap().len(), 1);
    front.stop_cleanly("-INT");
}

/// The mirror's rows of the exit-code table (docs/cli.md) with
/// `--compare`: a shadow that agrees passes; fewer pairs than
/// `--min-compared` (1 by default, so a run that copied nothing) is 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_compare_exit_codes_follow_the_table() {
    let shadow_seen = Seen::default();
    let primary = start_prices(10, Duration::ZERO, Seen::default()).await;
    let shadow = start_prices(10, Duration::ZERO, Arc::clone(&shadow_seen)).await;
    let dir = tempfile::tempdir().unwrap();
    let (primary, shadow) = (format!("http://{primary}"), format!("http://{shadow}"));
    let run = |name: &str, calls: usize, extra: &[&str]| {
        let tape = temp_tape(&dir, name);
        let mut args = vec!["--compare"];
        args.extend_from_slice(extra);
        let mirror = Recorder::mirror(&primary, &shadow, &tape, &args);
        let before = shadow_seen.lock().unwrap().len();
        for i in 0..calls {
            curl(&["-o", "/dev/null", &mirror.url(&format!("/price?sku={i}"))]);
        }
        support::eventually("the shadow has every call", 20, || {
            shadow_seen.lock().unwrap().len() == before + calls
        });
        mirror.stop("-INT")
    };
    let (code, stderr) = run("two.tape", 2, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run("short.tape", 2, &["--min-compared", "3"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("2 pairs compared, fewer than --min-compared 3"),
        "{stderr}"
    );
    let (code, stderr) = run("none.tape", 0, &[]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("nothing to compare"), "{stderr}");
    let (code, stderr) = run("none-asked.tape", 0, &["--min-compared", "0"]);
    assert_eq!(code, 0, "{stderr}");
}
