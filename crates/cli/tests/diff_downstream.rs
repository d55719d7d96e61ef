//! `reprise diff --downstream`: the calls a new build made to its mock,
//! compared with the calls recorded under each replayed exchange, through
//! the real binary. The three tapes (a recording with its downstream
//! calls, a replay's results, a mock's record of the calls it answered)
//! are written with the tape writer, as the recorder, `reprise replay
//! --out` and `reprise mock --out` write them (docs/tape-format.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::PathBuf;

use reprise_model::{
    Exchange, Flags, Header, Link, LinkKind, RecordSource, Replay, Request, Response, Role,
};
use serde_json::Value;

mod support;
use support::*;

/// One recorded downstream call of `parent`, the `order`th, as the egress
/// proxy records it.
fn recorded_call(parent: &Exchange, order: u32, line: &str, body: &str) -> Exchange {
    let (method, target) = line.split_once(' ').unwrap();
    let (authority, path) = target.split_once('/').unwrap();
    Exchange {
        id: reprise_model::id::new_id(),
        parent_id: parent.id.clone(),
        trace_id: parent.trace_id.clone(),
        recorded_at_ns: parent.recorded_at_ns + 1_000 * u64::from(order + 1),
        duration_ns: 500_000,
        role: Role::Downstream as i32,
        protocol: reprise_model::Protocol::Http11 as i32,
        link: Some(Link {
            kind: LinkKind::Trace as i32,
            order,
        }),
        source: Some(RecordSource {
            recorder: "proxy".into(),
            listener: "127.0.0.1:3128".into(),
            ..Default::default()
        }),
        request: Some(Request {
            method: method.into(),
            scheme: "https".into(),
            authority: authority.into(),
            path: format!("/{path}"),
            headers: vec![
                Header::new("content-type", "application/json"),
                Header::new(
                    "traceparent",
                    format!("00-{}-00f067aa0ba902b7-01", parent.id_hex()),
                ),
            ],
            body: body.as_bytes().to_vec().into(),
            body_size: body.len() as u64,
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers: vec![Header::new("content-type", "application/json")],
            body: br#"{"ok":true}"#.to_vec().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What `reprise mock --out` writes for a call the new build made for
/// recorded exchange `parent`: answered by `answered_by` (a miss: none).
fn made_call(
    parent: &Exchange,
    order: u32,
    line: &str,
    body: &str,
    answered_by: Option<&Exchange>,
) -> Exchange {
    let mut call = recorded_call(parent, order, line, body);
    call.source = Some(RecordSource {
        recorder: "mock".into(),
        ..Default::default()
    });
    if let Some(request) = call.request.as_mut() {
        // A new traceparent every run: never compared.
        request.headers[1] = Header::new(
            "traceparent",
            format!("00-{}-b7ad6b7169203331-01", parent.id_hex()),
        );
    }
    call.replay = Some(Replay {
        recorded_id: answered_by.map(|c| c.id.clone()).unwrap_or_default(),
        ..Default::default()
    });
    call.flags = Some(Flags {
        mock_miss: answered_by.is_none(),
        ..Default::default()
    });
    call
}

const INVENTORY: &str = "GET inventory/items/3";
const CHARGE: &str = "POST payments.example/charge";

/// A recording of two checkouts, each with an inventory call and a
/// charge, and one unlinked call (config, before any request); the
/// replay of both checkouts, answered as recorded.
struct Session {
    dir: tempfile::TempDir,
    recorded: PathBuf,
    replayed: PathBuf,
    inbound: Vec<Exchange>,
    calls: Vec<[Exchange; 2]>,
    pool: Exchange,
}

fn charge(amount: u32, nonce: &str) -> String {
    format!(r#"{{"amount":{amount},"currency":"EUR","nonce":"{nonce}"}}"#)
}

impl Session {
    fn new() -> Session {
        let dir = tempfile::tempdir().unwrap();
        let inbound: Vec<Exchange> = (0..2)
            .map(|i| answered(i, r#"{"ok":true,"order":"ord-1"}"#))
            .collect();
        let calls: Vec<[Exchange; 2]> = inbound
            .iter()
            .map(|parent| {
                [
                    recorded_call(parent, 0, INVENTORY, ""),
                    recorded_call(parent, 1, CHARGE, &charge(100, "r")),
                ]
            })
            .collect();
        let mut pool = recorded_call(&inbound[0], 0, "GET config/flags", "");
        pool.parent_id.clear();
        pool.link = Some(Link {
            kind: LinkKind::Unlinked as i32,
            order: 0,
        });
        let mut recording = inbound.clone();
        recording.extend(calls.iter().flatten().cloned());
        recording.push(pool.clone());
        let recorded = dir.path().join("recorded.tape");
        write_exchanges(&recorded, &recording);
        let replays: Vec<Exchange> = inbound
            .iter()
            .map(|e| replayed(e, r#"{"ok":true,"order":"ord-1"}"#))
            .collect();
        let replayed = dir.path().join("replayed.tape");
        write_exchanges(&replayed, &replays);
        Session {
            dir,
            recorded,
            replayed,
            inbound,
            calls,
            pool,
        }
    }

    /// The calls the new build made, as each checkout's list of (line,
    /// body, recorded call that answered), written as a mock's tape
    /// `name`; and one call the pool answered, out of any scope.
    fn mock_out(&self, name: &str, made: &[Vec<(&str, String, Option<usize>)>]) -> PathBuf {
        let mut out = Vec::new();
        for (i, calls) in made.iter().enumerate() {
            for (order, (line, body, answered_by)) in calls.iter().enumerate() {
                let by = answered_by.map(|k| &self.calls[i][k]);
                let order = u32::try_from(order).unwrap();
                out.push(made_call(&self.inbound[i], order, line, body, by));
            }
        }
        let mut pooled = made_call(
            &self.inbound[0],
            0,
            "GET config/flags",
            "",
            Some(&self.pool),
        );
        pooled.parent_id.clear();
        out.push(pooled);
        let path = self.dir.path().join(name);
        write_exchanges(&path, &out);
        path
    }

    /// The calls as recorded, the charges' amounts and nonces as given.
    fn same_calls(&self, name: &str, amount: u32, nonce: &str) -> PathBuf {
        let made: Vec<Vec<(&str, String, Option<usize>)>> = (0..2)
            .map(|_| {
                vec![
                    (INVENTORY, String::new(), Some(0)),
                    (CHARGE, charge(amount, nonce), Some(1)),
                ]
            })
            .collect();
        self.mock_out(name, &made)
    }

    fn diff(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args = vec!["diff", s(&self.recorded), s(&self.replayed)];
        args.extend(extra);
        let out = reprise(&args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }
}

/// The DOM of the HTML report `html` after its scripts ran, in headless
/// Chromium (Debian's package, installed by scripts/setup-tests.sh).
fn rendered(html: &std::path::Path) -> String {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "chromium is missing: run scripts/setup-tests.sh (scripts/test.sh does)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("Uncaught"), "{stderr}");
    text(&out.stdout)
}

#[test]
fn the_same_calls_pass_and_the_pool_is_counted() {
    let session = Session::new();
    let mock = session.same_calls("same.tape", 100, "r");
    let json = session.dir.path().join("report.json");
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock), "--json", s(&json)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("diff: 2 pairs: 2 identical, 0 regressed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "downstream calls: 4 recorded, 4 made (4 answered by the mock, 0 paired after a miss): 0 changed, 0 missing, 0 new; 0 mock misses"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "downstream pool: 1 calls served by unlinked recorded calls (1 recorded, charged to no exchange)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("downstream calls that differ"), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["downstream"]["recorded"], 4);
    assert_eq!(report["downstream"]["pool_served"], 1);
    // Without --downstream the report says nothing of the calls.
    let (code, stdout, _) = session.diff(&[]);
    assert_eq!(code, Some(0));
    assert!(!stdout.contains("downstream"), "{stdout}");
}

#[test]
fn a_changed_charge_amount_is_named_by_its_field() {
    let session = Session::new();
    let mock = session.same_calls("amount.tape", 110, "r");
    let json = session.dir.path().join("report.json");
    let html = session.dir.path().join("report.html");
    let junit = session.dir.path().join("junit.xml");
    let (code, stdout, stderr) = session.diff(&[
        "--downstream",
        s(&mock),
        "--json",
        s(&json),
        "--report",
        s(&html),
        "--junit",
        s(&junit),
    ]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let field = "downstream[POST payments.example/charge].request.body:$.amount";
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit.contains(&format!(
            "{field} changed in 2 pairs, e.g. {field}: 100 -&gt; 110"
        )),
        "{junit}"
    );
    let dom = rendered(&html);
    assert!(
        dom.contains("downstream calls: 4 recorded, 4 made")
            && dom.contains("2 changed, 0 missing, 0 new")
            && dom.contains(field),
        "{dom}"
    );
    assert!(stdout.contains("2 regressed"), "{stdout}");
    assert!(
        stdout.contains("GET /calls/{id}: downstream calls that differ"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  POST payments.example/charge: $.amount 100 → 110   2× regressed"),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let paths: Vec<&str> = report["endpoints"][0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["downstream[POST payments.example/charge].request.body:$.amount"]
    );
    // The same ignore rules as responses: --ignore, and a rules file's
    // rule for the call's endpoint.
    let (code, stdout, _) = session.diff(&["--downstream", s(&mock), "--ignore", "$.amount"]);
    assert_eq!(code, Some(0), "{stdout}");
    let rules = session.dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nendpoint = \"POST payments.example/charge\"\nignore = [\"$.amount\"]\n",
    )
    .unwrap();
    let (code, stdout, _) = session.diff(&["--downstream", s(&mock), "--rules", s(&rules)]);
    assert_eq!(code, Some(0), "{stdout}");
}

#[test]
fn an_extra_call_is_named_as_new_and_a_skipped_one_as_missing() {
    let session = Session::new();
    let with_refund: Vec<Vec<(&str, String, Option<usize>)>> = vec![
        vec![
            (INVENTORY, String::new(), Some(0)),
            (CHARGE, charge(100, "r"), Some(1)),
            ("POST payments.example/refund", charge(100, "r"), None),
        ],
        vec![
            (INVENTORY, String::new(), Some(0)),
            (CHARGE, charge(100, "r"), Some(1)),
        ],
    ];
    let mock = session.mock_out("extra.tape", &with_refund);
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock)]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("1 identical, 1 regressed"), "{stdout}");
    assert!(
        stdout.contains("  new call: POST payments.example/refund   1× regressed"),
        "{stdout}"
    );
    assert!(stdout.contains("1 new; 1 mock misses"), "{stdout}");

    let without_inventory: Vec<Vec<(&str, String, Option<usize>)>> = (0..2)
        .map(|_| vec![(CHARGE, charge(100, "r"), Some(1))])
        .collect();
    let mock = session.mock_out("missing.tape", &without_inventory);
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock)]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("  call missing: GET inventory/items/3   2× regressed"),
        "{stdout}"
    );

    // A miss at another id is paired with the recorded call by its
    // endpoint: the path changed, not a new call and a missing one.
    let other_item: Vec<Vec<(&str, String, Option<usize>)>> = (0..2)
        .map(|_| {
            vec![
                ("GET inventory/items/4", String::new(), None),
                (CHARGE, charge(100, "r"), Some(1)),
            ]
        })
        .collect();
    let mock = session.mock_out("other.tape", &other_item);
    let (code, stdout, _) = session.diff(&["--downstream", s(&mock)]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(r#"  GET inventory/items/3: path "/items/3" → "/items/4"   2× regressed"#),
        "{stdout}"
    );
    assert!(!stdout.contains("new call"), "{stdout}");
}

#[test]
fn a_baseline_of_the_calls_takes_their_noise_out() {
    let session = Session::new();
    // Each run sends a nonce of its own; the new build also changes the
    // amount.
    let candidate = session.same_calls("candidate.tape", 110, "c");
    let baseline = session.same_calls("baseline.tape", 100, "b");
    let replays = session.dir.path().join("baseline-replayed.tape");
    std::fs::copy(&session.replayed, &replays).unwrap();
    let (code, stdout, stderr) = session.diff(&[
        "--downstream",
        s(&candidate),
        "--baseline",
        s(&replays),
        "--baseline-downstream",
        s(&baseline),
    ]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("POST payments.example/charge: $.amount 100 → 110   2× regressed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"POST payments.example/charge: $.nonce "r" → "c"   2× noise"#),
        "{stdout}"
    );
    // The same amount: only the nonce differs, and it is noise; the
    // rules it suggests ignore it in the call's body.
    let same = session.same_calls("same.tape", 100, "c");
    let suggested = session.dir.path().join("suggested.toml");
    let (code, stdout, stderr) = session.diff(&[
        "--downstream",
        s(&same),
        "--baseline",
        s(&replays),
        "--baseline-downstream",
        s(&baseline),
        "--suggest-rules",
        s(&suggested),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("0 regressed, 2 noise only"), "{stdout}");
    let rules = std::fs::read_to_string(&suggested).unwrap();
    assert!(
        rules.contains(
            "[[rule]]\nendpoint = \"POST payments.example/charge\"\nignore = [\n  \"$.nonce\",  # noise in 2 of 2 pairs"
        ),
        "{rules}"
    );
    let (code, stdout, _) = session.diff(&["--downstream", s(&same), "--rules", s(&suggested)]);
    assert_eq!(
        code,
        Some(0),
        "the suggested rules apply to the calls: {stdout}"
    );
    // Without the baseline's calls, nothing says the nonce is noise.
    let (code, stdout, _) = session.diff(&["--downstream", s(&same), "--baseline", s(&replays)]);
    assert_eq!(code, Some(1), "{stdout}");
    // --auto-noise does not take a changed short nonce for noise either.
    let (code, _, _) = session.diff(&["--downstream", s(&same), "--auto-noise"]);
    assert_eq!(code, Some(1));
}

#[test]
fn bad_downstream_inputs_are_one_clear_line_and_exit_2() {
    let session = Session::new();
    let mock = session.same_calls("same.tape", 100, "r");
    let notes = session.dir.path().join("notes.txt");
    std::fs::write(&notes, "not a tape\n").unwrap();
    let missing = session.dir.path().join("gone.tape");
    let replays = s(&session.replayed).to_string();
    for (args, message) in [
        (vec!["--downstream", s(&missing)], "--downstream: "),
        (vec!["--downstream", s(&notes)], "not a recording"),
        (
            vec!["--downstream", replays.as_str()],
            "holds no downstream call (expected the calls a mock recorded, `reprise mock --out`)",
        ),
        (
            vec!["--downstream", s(&mock), "--baseline-downstream", s(&mock)],
            "--baseline-downstream goes with --baseline",
        ),
        (
            vec![
                "--baseline",
                replays.as_str(),
                "--baseline-downstream",
                s(&mock),
            ],
            "--baseline-downstream goes with --downstream",
        ),
    ] {
        let (code, stdout, stderr) = session.diff(&args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.starts_with("reprise: ") && stderr.contains(message),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let (_, _, stderr) = session.diff(&["--downstream", s(&missing)]);
    assert!(
        stderr.contains(&format!("{}: cannot read", missing.display())),
        "{stderr}"
    );
}

/// Binds 127.0.0.1 and serves `router` on `rt` until `stop` is sent.
fn serve_on(
    rt: &tokio::runtime::Runtime,
    router: axum::Router,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = rt.spawn(async move {
        example_json_shop::serve(listener, router, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, done)
}

fn stop_serving(
    rt: &tokio::runtime::Runtime,
    (_, stop, done): (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
) {
    let _ = stop.send(());
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), done)
            .await
            .expect("the server did not stop within 10 s")
            .unwrap();
    });
}

/// The example shop (examples/json-shop) recorded with its tower layers:
/// each order's stock call and each checkout's reservation are recorded
/// under the inbound exchange they were made for. Replayed against the
/// same build with its downstream mocked by the layers, the replay is
/// identical; the calls a mock would record for the same build (each
/// answered by the recorded call it repeats) compare clean, and a build
/// that reserves another quantity and skips a stock call is named call by
/// call.
#[test]
fn calls_recorded_by_the_tower_layers_are_compared_by_diff() {
    use reprise_tower::{Mode, Reprise};
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("json-shop.tape");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = |mode| {
        Reprise::builder()
            .mode(mode)
            .tape(&tape)
            .service("json-shop")
            .config()
            .unwrap()
    };
    let inventory = serve_on(&rt, example_json_shop::inventory());
    let downstream = inventory.0.to_string();
    let recording = Reprise::start(config(Mode::Record)).unwrap();
    let shop = serve_on(&rt, example_json_shop::shop(&recording, &downstream));
    let base = format!("http://{}", shop.0);
    for path in ["/order/pen?qty=3", "/order/paper"] {
        let (body, _) = curl(&["-sf", &format!("{base}{path}")]);
        assert!(body.contains("total_cents"), "{path}: {body}");
    }
    let (body, _) = curl(&[
        "-sf",
        "-H",
        "content-type: application/json",
        "--data",
        r#"{"sku":"pen","qty":1}"#,
        &format!("{base}/checkout"),
    ]);
    assert!(body.contains("R-00001"), "{body}");
    stop_serving(&rt, shop);
    let stats = rt
        .block_on(recording.shutdown(std::time::Duration::from_secs(10)))
        .unwrap();
    assert_eq!((stats.recorded, stats.dropped()), (6, 0), "{stats:?}");
    stop_serving(&rt, inventory);

    let mocking = Reprise::start(config(Mode::Mock)).unwrap();
    let shop = serve_on(&rt, example_json_shop::shop(&mocking, &downstream));
    let replayed = dir.path().join("replayed.tape");
    let out = reprise(&[
        "replay",
        s(&tape),
        "--target",
        &format!("http://{}", shop.0),
        "--out",
        s(&replayed),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    stop_serving(&rt, shop);

    let recorded = read_tape(&tape);
    let calls: Vec<&Exchange> = recorded.iter().filter(|e| e.is_downstream()).collect();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| recorded.iter().any(|e| e.id == c.parent_id)),
        "every call is linked to its inbound exchange"
    );
    // What a mock records of a call it answered with `call`.
    let answered = |call: &Exchange| {
        let mut made = call.clone();
        made.id = reprise_model::id::new_id();
        made.source = Some(RecordSource {
            recorder: "mock".into(),
            ..Default::default()
        });
        made.replay = Some(Replay {
            recorded_id: call.id.clone(),
            ..Default::default()
        });
        made
    };
    let same: Vec<Exchange> = calls.iter().map(|c| answered(c)).collect();
    let mock = dir.path().join("same.tape");
    write_exchanges(&mock, &same);
    let diff = |mock: &std::path::Path| {
        let out = reprise(&["diff", s(&tape), s(&replayed), "--downstream", s(mock)]);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = diff(&mock);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("diff: 3 pairs: 3 identical")
            && stdout.contains("downstream calls: 3 recorded, 3 made (3 answered by the mock"),
        "{stdout}"
    );

    // The changed build: the reservation asks for 2 (the mock missed it),
    // and the paper order never asks for stock.
    let mut changed = Vec::new();
    for call in &calls {
        let path = call.request.as_ref().unwrap().path.clone();
        if path == "/stock/paper" {
            continue;
        }
        let mut made = answered(call);
        if path == "/reserve" {
            let request = made.request.as_mut().unwrap();
            request.body = br#"{"sku":"pen","qty":2}"#.to_vec().into();
            made.replay = Some(Replay::default());
            made.flags = Some(Flags {
                mock_miss: true,
                ..Default::default()
            });
        }
        changed.push(made);
    }
    let mock = dir.path().join("changed.tape");
    write_exchanges(&mock, &changed);
    let (code, stdout, stderr) = diff(&mock);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    for line in [
        "diff: 3 pairs: 1 identical, 2 regressed".to_string(),
        "POST /checkout: downstream calls that differ".to_string(),
        format!("  POST {downstream}/reserve: $.qty 1 → 2   1× regressed"),
        "GET /order/paper: downstream calls that differ".to_string(),
        format!("  call missing: GET {downstream}/stock/paper   1× regressed"),
    ] {
        assert!(stdout.contains(&line), "{line:?} in:\n{stdout}");
    }
}
