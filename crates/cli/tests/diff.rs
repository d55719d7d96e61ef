//! `reprise diff` end to end: record calls to nginx through the real
//! proxy, replay them to nginx serving the same files or a copy with one
//! field changed, and compare.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod support;
use support::*;

const ITEMS: [(&str, &str); 3] = [
    (
        "api/item.json",
        r#"{"id":7,"name":"teapot","price":{"cents":1200},"tags":["kitchen","gift"]}"#,
    ),
    (
        "api/list.json",
        r#"{"items":[{"id":1,"stock":3},{"id":2,"stock":0}]}"#,
    ),
    ("notes.txt", "line one\nline two\n"),
];

/// Renders `html` in headless Chromium (Debian's package, installed by
/// scripts/setup-tests.sh): the DOM after its scripts ran, and what the
/// browser logged. A screenshot goes to the tests' scratch folder
/// (`CARGO_TARGET_TMPDIR/diff-report.png`).
fn render(html: &Path) -> (String, String) {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "chromium is missing: run scripts/setup-tests.sh (scripts/test.sh does)"
    );
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let url = format!("file://{}", html.display());
    let run = |extra: &[String]| {
        let out = Command::new(chromium)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium: {}", text(&out.stderr));
        out
    };
    let dom = run(&["--dump-dom".to_string()]);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diff-report.png");
    run(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1200,1400".to_string(),
    ]);
    assert!(shot.exists(), "a screenshot at {}", shot.display());
    let console: String = text(&dom.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect::<Vec<_>>()
        .join("\n");
    (text(&dom.stdout), console)
}

/// Runs `reprise ARGS` and checks it fails with exit 2 and `message`
/// on stderr.
fn fails_with(args: &[&str], message: &str) {
    let out = reprise(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

/// A report's figures without its examples (which pair is "first seen"
/// depends on the order pairs are compared in).
fn figures(report: &Value) -> Value {
    let endpoints: Vec<Value> = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let paths: Vec<Value> = e["paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| serde_json::json!([p["pattern"], p["kind"], p["regressed"], p["noise"]]))
                .collect();
            serde_json::json!([
                e["endpoint"],
                e["pairs"],
                e["identical"],
                e["regressed"],
                e["noise_only"],
                e["not_compared"],
                paths
            ])
        })
        .collect();
    serde_json::json!([
        report["pairs"],
        report["identical"],
        report["regressed"],
        report["noise_only"],
        report["not_compared"],
        endpoints
    ])
}

/// Records one call to each file of `nginx` through `reprise record`.
fn record(nginx: &Nginx, tape: &Path) {
    let recorder = Recorder::start(&format!("http://{}", nginx.http1), tape, &[]);
    for (path, _) in ITEMS {
        curl(&["-o", "/dev/null", &recorder.url(&format!("/{path}"))]);
    }
    recorder.stop_cleanly("-TERM");
}

fn replay(tape: &Path, nginx: &Nginx, out: &Path) {
    let result = reprise(&[
        "replay",
        s(tape),
        "--target",
        &format!("http://{}", nginx.http1),
        "--out",
        s(out),
        "-q",
    ]);
    assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
}

#[test]
fn a_changed_field_is_reported_by_its_path_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let same = Nginx::serving(&ITEMS);
    let mut changed_files = ITEMS;
    changed_files[0].1 =
        r#"{"id":7,"name":"teapot","price":{"cents":1300},"tags":["kitchen","gift"]}"#;
    changed_files[1].1 = r#"{"items":[{"id":1,"stock":3},{"id":2,"stock":5}]}"#;
    changed_files[2].1 = "line one\nline 2\n";
    let changed = Nginx::serving(&changed_files);
    let tape = dir.path().join("rec.tape");
    record(&same, &tape);

    // The same files: nothing differs (Date, ETag, Last-Modified and the
    // like are ignored by default), exit 0.
    let same_out = dir.path().join("same.tape");
    replay(&tape, &same, &same_out);
    let out = reprise(&["diff", s(&tape), s(&same_out)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout)
            .starts_with("diff: 3 pairs: 3 identical, 0 regressed, 0 noise only, 0 not compared"),
        "{}",
        text(&out.stdout)
    );

    // One field per file changed: exactly those paths, exit 1.
    let changed_out = dir.path().join("changed.tape");
    replay(&tape, &changed, &changed_out);
    let json = dir.path().join("diff.json");
    let junit = dir.path().join("junit.xml");
    let out = reprise(&[
        "diff",
        s(&tape),
        s(&changed_out),
        "--json",
        s(&json),
        "--junit",
        s(&junit),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("3 regressed"), "{stdout}");
    assert!(
        stdout.contains("$.price.cents") && stdout.contains("1200 → 1300"),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut found: Vec<(String, String, String)> = Vec::new();
    for endpoint in report["endpoints"].as_array().unwrap() {
        for path in endpoint["paths"].as_array().unwrap() {
            found.push((
                endpoint["endpoint"].as_str().unwrap().to_string(),
                path["pattern"].as_str().unwrap().to_string(),
                path["example"]["path"].as_str().unwrap().to_string(),
            ));
        }
    }
    found.sort();
    assert_eq!(
        found,
        [
            (
                "GET /api/item.json".to_string(),
                "$.price.cents".to_string(),
                "$.price.cents".to_string()
            ),
            (
                "GET /api/list.json".to_string(),
                "$.items[*].stock".to_string(),
                "$.items[1].stock".to_string()
            ),
            (
                "GET /notes.txt".to_string(),
                "body:text".to_string(),
                "body:line 2".to_string()
            ),
        ]
    );

    // The same comparison cut into parts on disk (as a recording too big
    // for --max-memory is): the same figures.
    let parted_json = dir.path().join("parted.json");
    let out = reprise(&[
        "diff",
        s(&tape),
        s(&changed_out),
        "--max-memory",
        "16",
        "--json",
        s(&parted_json),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let parted: Value =
        serde_json::from_str(&std::fs::read_to_string(&parted_json).unwrap()).unwrap();
    assert_eq!(figures(&parted), figures(&report));

    // The HTML report, rendered by headless Chromium: the script ran
    // without an error and the numbers on the page are the JSON's.
    let html = dir.path().join("report.html");
    let out = reprise(&["diff", s(&tape), s(&changed_out), "--report", s(&html)]);
    assert_eq!(out.status.code(), Some(1));
    let (dom, console) = render(&html);
    assert!(
        dom.contains(r#"data-rendered="yes""#),
        "the page's script ran to the end:\n{console}"
    );
    assert!(!console.contains("Uncaught"), "console errors:\n{console}");
    for (id, field) in [
        ("pairs", "pairs"),
        ("identical", "identical"),
        ("regressed", "regressed"),
    ] {
        let shown = format!(r#"id="{id}""#);
        let at = dom
            .find(&shown)
            .unwrap_or_else(|| panic!("#{id} on the page"));
        let text = &dom[at..];
        let text = &text[text.find('>').unwrap() + 1..text.find('<').unwrap()];
        assert_eq!(
            text.split_whitespace().next().unwrap(),
            report[field].to_string(),
            "#{id}: {text}"
        );
    }
    for path in ["$.price.cents", "$.items[*].stock", "body:text"] {
        assert!(dom.contains(path), "{path} on the page");
    }
    assert!(dom.contains("<svg"), "latency charts drawn");

    // JUnit: one test case per endpoint, each failing with its path.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"tests="3" failures="3""#), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(xml.contains(r#"name="GET /api/item.json""#), "{xml}");
    assert!(xml.contains("$.price.cents changed in 1 pairs"), "{xml}");
    assert!(
        xml.contains("$.items[*].stock changed in 1 pairs, e.g. $.items[1].stock: 0 -&gt; 5"),
        "{xml}"
    );

    // An ignore rule takes a path out, and only that path.
    let out = reprise(&[
        "diff",
        s(&tape),
        s(&changed_out),
        "--ignore",
        "$.price",
        "--ignore",
        "$.items[*].stock",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("2 identical, 1 regressed"),
        "{}",
        text(&out.stdout)
    );

    // The same from a rules file, per endpoint.
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "ignore_headers = [\"accept-ranges\"]\n\
         [[rule]]\nendpoint = \"GET /api/item.json\"\nignore = [\"$.price\"]\n\
         [[rule]]\nendpoint = \"GET /api/list.json\"\nignore = [\"$.items[*].stock\"]\n",
    )
    .unwrap();
    let out = reprise(&["diff", s(&tape), s(&changed_out), "--rules", s(&rules)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2 identical, 1 regressed"), "{stdout}");
    assert!(stdout.contains("body:text"), "{stdout}");
}

#[test]
fn arrays_can_be_compared_as_multisets() {
    let dir = tempfile::tempdir().unwrap();
    let files = [(
        "api/list.json",
        r#"{"items":[{"id":1,"stock":3},{"id":2,"stock":0}]}"#,
    )];
    let reordered = [(
        "api/list.json",
        r#"{"items":[{"stock":0,"id":2},{"id":1,"stock":3}]}"#,
    )];
    let (old, new) = (Nginx::serving(&files), Nginx::serving(&reordered));
    let tape = dir.path().join("rec.tape");
    let recorder = Recorder::start(&format!("http://{}", old.http1), &tape, &[]);
    curl(&["-o", "/dev/null", &recorder.url("/api/list.json")]);
    recorder.stop_cleanly("-TERM");
    let out_tape = dir.path().join("out.tape");
    replay(&tape, &new, &out_tape);
    let by_position = reprise(&["diff", s(&tape), s(&out_tape)]);
    assert_eq!(by_position.status.code(), Some(1));
    let as_multiset = reprise(&["diff", s(&tape), s(&out_tape), "--unordered", "$.items"]);
    assert_eq!(
        as_multiset.status.code(),
        Some(0),
        "{}",
        text(&as_multiset.stdout)
    );
}

#[test]
fn bad_input_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::serving(&ITEMS);
    let tape = dir.path().join("rec.tape");
    record(&nginx, &tape);
    for (args, message) in [
        (
            vec!["diff", s(&tape), s(&tape)],
            "holds no replayed exchange",
        ),
        (
            vec!["diff", s(&tape), s(&tape), "--ignore", "price"],
            "--ignore",
        ),
        (vec!["diff", s(&tape), "/nonexistent.tape"], "cannot read"),
    ] {
        let out = reprise(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("reprise: ") && stderr.contains(message),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    fails_with(
        &["diff", s(&tape), s(&tape), "--max-memory", "lots"],
        "--max-memory",
    );
    for (content, message) in [
        ("ignore = [\"$.ok\"]\ncolour = 1\n", "unknown field"),
        ("ignore = [\"price\"]\n", "must start with $"),
        ("[[rule]]\nendpoint = \"/api\"\n", "expected METHOD /path"),
        ("ignore = [\n", "TOML parse error"),
    ] {
        let rules = dir.path().join("bad.toml");
        std::fs::write(&rules, content).unwrap();
        let out = reprise(&["diff", s(&tape), s(&tape), "--rules", s(&rules)]);
        assert_eq!(out.status.code(), Some(2), "{content}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--rules") && stderr.contains(message),
            "{content}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// Four copies of a target whose every answer carries a request id that
/// differs on every call (noise) and its build's version: the old build,
/// recorded; a baseline copy of it; the same build again; a changed build.
struct Noisy {
    // Keeps the targets serving.
    _runtime: tokio::runtime::Runtime,
    baseline: reprise_testkit::target::Target,
    same: reprise_testkit::target::Target,
    changed: reprise_testkit::target::Target,
    dir: tempfile::TempDir,
    tape: PathBuf,
}

impl Noisy {
    /// Records `calls` GETs of `/items/{i % items}` to the old build.
    fn recorded(calls: usize, items: usize) -> Noisy {
        use reprise_testkit::target::{Behaviour, Target};
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let start = |version| runtime.block_on(Target::start(Behaviour::Noisy { version }));
        let (old, baseline, same, changed) = (start(1), start(1), start(1), start(2));
        let dir = tempfile::tempdir().unwrap();
        let tape = dir.path().join("rec.tape");
        let recorder = Recorder::start(&old.url(), &tape, &[]);
        for i in 0..calls {
            let url = recorder.url(&format!("/items/{}", i % items));
            curl(&["-o", "/dev/null", &url]);
        }
        recorder.stop_cleanly("-TERM");
        Noisy {
            _runtime: runtime,
            baseline,
            same,
            changed,
            dir,
            tape,
        }
    }
}

#[test]
fn a_baseline_turns_noise_into_noise_and_leaves_the_regression() {
    let Noisy {
        _runtime,
        baseline,
        same,
        changed,
        dir,
        tape,
    } = Noisy::recorded(20, 4);
    let replay_to = |target: &reprise_testkit::target::Target, name: &str| {
        let out = dir.path().join(name);
        let result = reprise(&[
            "replay",
            s(&tape),
            "--target",
            &target.url(),
            "--out",
            s(&out),
            "-q",
        ]);
        assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
        out
    };
    let b = replay_to(&baseline, "baseline.tape");
    let c_same = replay_to(&same, "same.tape");
    let c_changed = replay_to(&changed, "changed.tape");

    // Without a baseline the request id looks like a regression.
    let out = reprise(&["diff", s(&tape), s(&c_same)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("$.request_id"),
        "{}",
        text(&out.stdout)
    );

    // --auto-noise guesses that two UUIDs are noise, and says it guessed.
    let out = reprise(&["diff", s(&tape), s(&c_same), "--auto-noise"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("20 noise only") && stdout.contains("GUESSED"),
        "{stdout}"
    );
    assert!(stdout.contains("20× noise (guess)"), "{stdout}");
    let out = reprise(&["diff", s(&tape), s(&c_changed), "--auto-noise"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the version is no id: {}",
        text(&out.stdout)
    );
    fails_with(
        &[
            "diff",
            s(&tape),
            s(&c_same),
            "--auto-noise",
            "--baseline",
            s(&b),
        ],
        "--auto-noise",
    );

    // With one, the same build is noise only: exit 0.
    let out = reprise(&["diff", s(&tape), s(&c_same), "--baseline", s(&b)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("diff: 20 pairs: 0 identical, 0 regressed, 20 noise only"),
        "{stdout}"
    );
    assert!(
        stdout.contains("20 differences also seen by the baseline on the same call"),
        "{stdout}"
    );

    // A changed build: the version is the regression, the id still noise.
    let json = dir.path().join("diff.json");
    let out = reprise(&[
        "diff",
        s(&tape),
        s(&c_changed),
        "--baseline",
        s(&b),
        "--json",
        s(&json),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("20 regressed"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut regressed = Vec::new();
    let mut noise = Vec::new();
    for endpoint in report["endpoints"].as_array().unwrap() {
        for path in endpoint["paths"].as_array().unwrap() {
            let pattern = path["pattern"].as_str().unwrap().to_string();
            if path["regressed"].as_u64().unwrap() > 0 {
                regressed.push(pattern.clone());
            }
            if path["noise"].as_u64().unwrap() > 0 {
                noise.push(pattern);
            }
        }
    }
    regressed.dedup();
    noise.dedup();
    let parted_json = dir.path().join("parted.json");
    let out = reprise(&[
        "diff",
        s(&tape),
        s(&c_changed),
        "--baseline",
        s(&b),
        "--max-memory",
        "1",
        "--json",
        s(&parted_json),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let parted: Value =
        serde_json::from_str(&std::fs::read_to_string(&parted_json).unwrap()).unwrap();
    assert_eq!(
        figures(&parted),
        figures(&report),
        "cut into parts, with a baseline"
    );
    assert!(
        regressed.iter().all(|p| p == "$.version") && !regressed.is_empty(),
        "{regressed:?}"
    );
    assert!(
        noise.iter().all(|p| p == "$.request_id") && !noise.is_empty(),
        "{noise:?}"
    );

    // Bad thresholds are one clear line.
    fails_with(
        &[
            "diff",
            s(&tape),
            s(&c_same),
            "--baseline",
            s(&b),
            "--noise-relative",
            "3",
        ],
        "--noise-relative",
    );
}

#[test]
fn a_grpc_field_that_changed_is_reported_by_its_field_number() {
    use reprise_testkit::echo::Note;
    use reprise_testkit::{EchoService, echo_client, start_echo_service};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let old = runtime.block_on(start_echo_service(EchoService::default()));
    let same = runtime.block_on(start_echo_service(EchoService::default()));
    let changed = runtime.block_on(start_echo_service(EchoService { unary_offset: 1 }));
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("grpc.tape");
    let recorder = Recorder::start(&format!("http://{old}"), &tape, &[]);
    runtime.block_on(async {
        let mut client = echo_client(recorder.addr).await;
        for i in 0..3 {
            let note = Note {
                text: format!("note {i}"),
                number: i,
                tags: vec!["t".into()],
            };
            client.unary(note).await.unwrap();
        }
    });
    recorder.stop_cleanly("-TERM");
    for (target, code, what) in [(same, 0, "3 identical"), (changed, 1, "3 regressed")] {
        let out = dir.path().join(format!("{}.tape", target.port()));
        let result = reprise(&[
            "replay",
            s(&tape),
            "--target",
            &format!("http://{target}"),
            "--out",
            s(&out),
            "-q",
        ]);
        assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
        let diff = reprise(&["diff", s(&tape), s(&out)]);
        let stdout = text(&diff.stdout);
        assert_eq!(diff.status.code(), Some(code), "{stdout}");
        assert!(stdout.contains(what), "{stdout}");
        if code == 1 {
            // Field 2 of the answer (`number`) changed, nothing else: on
            // the call whose number was 0 it was absent before (proto3
            // leaves a zero out), so it shows as added there.
            let lines: Vec<&str> = stdout
                .lines()
                .filter(|l| l.contains("× regressed"))
                .collect();
            assert!(!lines.is_empty(), "{stdout}");
            assert!(
                lines
                    .iter()
                    .all(|l| l.trim_start().starts_with(r#"$.messages[*]["2"]"#)),
                "{stdout}"
            );
            // With the service's .proto the field has its name, and a
            // zero is a value: 0 -> 1 is a change like the others.
            let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/proto/echo.proto");
            let diff = reprise(&["diff", s(&tape), s(&out), "--proto", s(&proto)]);
            let stdout = text(&diff.stdout);
            assert_eq!(diff.status.code(), Some(1), "{stdout}");
            assert!(stdout.contains("$.messages[*].number"), "{stdout}");
            assert!(stdout.contains("3× regressed"), "{stdout}");
            assert!(!stdout.contains("added"), "{stdout}");
            // The same types asked from the old service by server reflection.
            let diff = reprise(&[
                "diff",
                s(&tape),
                s(&out),
                "--reflection",
                &format!("http://{old}"),
            ]);
            let by_reflection = text(&diff.stdout);
            assert_eq!(
                diff.status.code(),
                Some(1),
                "{by_reflection}{}",
                text(&diff.stderr)
            );
            assert!(
                by_reflection.contains("$.messages[*].number"),
                "{by_reflection}"
            );
            let closed = format!("http://127.0.0.1:{}", free_port());
            fails_with(
                &["diff", s(&tape), s(&out), "--reflection", &closed],
                "gRPC server reflection at",
            );
            fails_with(
                &["diff", s(&tape), s(&out), "--proto", "/nonexistent.proto"],
                "--proto",
            );
            fails_with(
                &["diff", s(&tape), s(&out), "--descriptor-set", s(&tape)],
                "not a FileDescriptorSet",
            );
        }
    }
}

#[test]
fn replay_compare_replays_to_target_and_baseline_and_compares_in_one_run() {
    let Noisy {
        _runtime,
        baseline,
        same,
        changed,
        dir,
        tape,
    } = Noisy::recorded(10, 10);
    for (target, code) in [(&same, 0), (&changed, 1)] {
        let json = dir.path().join(format!("diff-{code}.json"));
        let out = reprise(&[
            "replay",
            s(&tape),
            "--target",
            &target.url(),
            "--baseline-target",
            &baseline.url(),
            "--compare",
            "--diff-json",
            s(&json),
            "-q",
        ]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{stdout}{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("replay: 10 calls"), "{stdout}");
        assert!(stdout.contains("baseline: 10 calls"), "{stdout}");
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(report["pairs"], 10);
        assert_eq!(report["regressed"], if code == 1 { 10 } else { 0 });
        assert_eq!(report["noise_only"], if code == 1 { 0 } else { 10 });
    }
    // A baseline target that is no target.
    fails_with(
        &[
            "replay",
            s(&tape),
            "--target",
            &same.url(),
            "--compare",
            "--baseline-target",
            "ftp://127.0.0.1",
        ],
        "--baseline-target",
    );
    // Rules without --compare are a usage error.
    fails_with(
        &[
            "replay",
            s(&tape),
            "--target",
            &same.url(),
            "--ignore",
            "$.id",
        ],
        "go with --compare",
    );
}

#[test]
fn gzip_bodies_are_compared_field_by_field() {
    // nginx compresses JSON for clients that accept gzip; the recording
    // keeps the compressed bytes and the replay asks for gzip again.
    let dir = tempfile::tempdir().unwrap();
    let old = Nginx::serving(&ITEMS);
    let mut files = ITEMS;
    files[0].1 = r#"{"id":7,"name":"kettle","price":{"cents":1200},"tags":["kitchen","gift"]}"#;
    let new = Nginx::serving(&files);
    let tape = dir.path().join("gz.tape");
    let recorder = Recorder::start(&format!("http://{}", old.http1), &tape, &[]);
    curl(&[
        "--compressed",
        "-o",
        "/dev/null",
        &recorder.url("/api/item.json"),
    ]);
    recorder.stop_cleanly("-TERM");
    let recorded = read_tape(&tape);
    let headers = &recorded[0].response.as_ref().unwrap().headers;
    assert!(
        headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-encoding") && h.value == b"gzip"),
        "nginx answered gzip: {headers:?}"
    );
    let out_tape = dir.path().join("out.tape");
    replay(&tape, &new, &out_tape);
    let out = reprise(&["diff", s(&tape), s(&out_tape)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r#"$.name"#) && stdout.contains(r#""teapot" → "kettle""#),
        "{stdout}"
    );
}

#[test]
fn httpbin_replayed_against_a_copy_with_a_baseline_is_noise_only() {
    // Three instances of the same third-party service: what differs
    // between them (/uuid, the request's own headers and URL echoed by
    // /anything) is noise; nothing regressed.
    let (old, new, baseline) = (Httpbin::start(), Httpbin::start(), Httpbin::start());
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("httpbin.tape");
    let recorder = Recorder::start(&old.url(), &tape, &[]);
    for i in 0..5 {
        curl(&["-o", "/dev/null", &recorder.url("/uuid")]);
        curl(&[
            "-o",
            "/dev/null",
            &recorder.url(&format!("/anything?n={i}")),
        ]);
        curl(&["-o", "/dev/null", &recorder.url("/json")]);
    }
    recorder.stop_cleanly("-TERM");
    let json = dir.path().join("diff.json");
    let suggested = dir.path().join("suggested.toml");
    let candidate = dir.path().join("candidate.tape");
    let out = reprise(&[
        "replay",
        s(&tape),
        "--target",
        &new.url(),
        "--baseline-target",
        &baseline.url(),
        "--compare",
        "--out",
        s(&candidate),
        "--diff-json",
        s(&json),
        "--suggest-rules",
        s(&suggested),
        "-q",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["pairs"], 15, "{stdout}");
    assert_eq!(report["regressed"], 0, "{stdout}");
    let endpoint = |name: &str| {
        report["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["endpoint"] == name)
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
            .clone()
    };
    assert_eq!(endpoint("GET /uuid")["noise_only"], 5, "{stdout}");
    assert_eq!(endpoint("GET /anything")["noise_only"], 5, "{stdout}");
    assert_eq!(endpoint("GET /json")["identical"], 5, "{stdout}");
    let uuid = endpoint("GET /uuid");
    let uuid_paths: Vec<&str> = uuid["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pattern"].as_str().unwrap())
        .collect();
    assert!(uuid_paths.contains(&"$.uuid"), "{stdout}");

    // The noise learned from the baseline, as rules a person reviews: with
    // them, the same comparison without a baseline finds nothing either.
    let rules = std::fs::read_to_string(&suggested).unwrap();
    assert!(rules.contains(r#"endpoint = "GET /uuid""#), "{rules}");
    assert!(rules.contains(r#""$.uuid","#), "{rules}");
    assert!(!rules.contains("GET /json"), "{rules}");
    let without = reprise(&["diff", s(&tape), s(&candidate)]);
    assert_eq!(without.status.code(), Some(1), "noise without a baseline");
    let with_rules = reprise(&["diff", s(&tape), s(&candidate), "--rules", s(&suggested)]);
    assert_eq!(
        with_rules.status.code(),
        Some(0),
        "{rules}\n{}",
        text(&with_rules.stdout)
    );
}

/// Every row of the exit-code table docs/cli.md gives for the commands
/// that judge, for `diff`, with its precedence: tapes written here, so
/// that each row is made on purpose.
#[test]
fn diff_exit_codes_follow_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let body = |i: usize| format!(r#"{{"ok":true,"path":"/calls/{i}"}}"#);
    let recorded: Vec<_> = (0..200).map(|i| answered(i, &body(i))).collect();
    let rec = dir.path().join("rec.tape");
    write_blocks(&rec, &recorded, false);
    let tape = |name: &str, changed: bool, damaged: bool| {
        let results: Vec<_> = recorded
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let answer = if changed && i == 0 {
                    r#"{"ok":false}"#.to_string()
                } else {
                    body(i)
                };
                replayed(r, &answer)
            })
            .collect();
        let path = dir.path().join(name);
        write_blocks(&path, &results, damaged);
        path
    };
    let same = tape("same.tape", false, false);
    let changed = tape("changed.tape", true, false);
    let damaged = tape("damaged.tape", false, true);
    let damaged_changed = tape("damaged-changed.tape", true, true);
    // The replay of another recording: nothing pairs.
    let other: Vec<_> = (0..5).map(|i| answered(i, &body(i))).collect();
    let unrelated = dir.path().join("unrelated.tape");
    write_blocks(
        &unrelated,
        &other.iter().map(|r| replayed(r, "{}")).collect::<Vec<_>>(),
        false,
    );

    let shortfall = "fewer than --min-compared";
    for (results, extra, code, on_stderr) in [
        (&same, vec![], 0, None),
        (&changed, vec![], 1, None),
        (&damaged, vec![], 3, Some("checksum")),
        (
            &unrelated,
            vec![],
            4,
            Some("0 pairs compared, fewer than --min-compared 1"),
        ),
        (&unrelated, vec!["--min-compared", "0"], 0, None),
        (&same, vec!["--min-compared", "201"], 4, Some(shortfall)),
        // 1 wins over 3 and 4; both are still reported.
        (
            &damaged_changed,
            vec!["--min-compared", "1000"],
            1,
            Some(shortfall),
        ),
        (&damaged_changed, vec![], 1, Some("checksum")),
        // 4 wins over 3.
        (
            &damaged,
            vec!["--min-compared", "1000"],
            4,
            Some("checksum"),
        ),
        // 2 wins over all.
        (
            &damaged_changed,
            vec!["--min-compared", "lots"],
            2,
            Some("--min-compared"),
        ),
    ] {
        let mut args = vec!["diff", s(&rec), s(results)];
        args.extend(extra.iter().copied());
        let out = reprise(&args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\n{}{stderr}",
            text(&out.stdout)
        );
        if let Some(expected) = on_stderr {
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
        if code == 0 {
            assert!(!stderr.contains(shortfall), "{args:?}: {stderr}");
        }
    }
    // The damaged run with a shortfall reports both.
    let out = reprise(&["diff", s(&rec), s(&damaged), "--min-compared", "1000"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(shortfall) && stderr.contains("checksum"),
        "{stderr}"
    );
    // Two unrelated tapes say how many were not compared.
    let out = reprise(&["diff", s(&rec), s(&unrelated)]);
    assert!(
        text(&out.stdout).contains("205 not compared"),
        "{}",
        text(&out.stdout)
    );
}

/// The `x` of each point of the CDF `series` ("recorded" or "replayed")
/// of the first chart in a rendered page.
fn curve(dom: &str, series: &str) -> Vec<f64> {
    let tag = dom
        .find(&format!(r#"data-series="{series}""#))
        .unwrap_or_else(|| panic!("no {series} curve on the page"));
    let start = dom[..tag].rfind("<polyline").unwrap();
    let element = &dom[start..tag];
    let points = element.split(r#"points=""#).nth(1).unwrap();
    let points = &points[..points.find('"').unwrap()];
    points
        .split_whitespace()
        .map(|p| p.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// A recording answered in about 200 µs replayed against a build that
/// takes 80 ms: on a linear axis the recorded CDF is a vertical line at
/// zero; on the report's log axis both are curves across the chart.
#[test]
fn latency_charts_use_a_log_axis() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"ok":true}"#;
    let mut recorded = Vec::new();
    let mut results = Vec::new();
    for i in 0..40 {
        let mut original = answered(i, body);
        original.duration_ns = 200_000 + i as u64 * 5_000;
        let mut again = replayed(&original, body);
        again.duration_ns = 80_000_000 + i as u64 * 1_000_000;
        recorded.push(original);
        results.push(again);
    }
    let (rec, out) = (dir.path().join("rec.tape"), dir.path().join("out.tape"));
    write_blocks(&rec, &recorded, false);
    write_blocks(&out, &results, false);
    let html = dir.path().join("report.html");
    let run = reprise(&["diff", s(&rec), s(&out), "--report", s(&html)]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let (dom, console) = render(&html);
    assert!(dom.contains(r#"data-rendered="yes""#), "{console}");
    assert!(dom.contains(r#"data-scale="log""#), "a log axis");
    assert!(dom.contains("latency, log scale"), "the axis says so");
    // The chart's axis runs from x = 28 to x = 312.
    let (axis_start, axis_len) = (28.0, 284.0);
    let recorded_x = curve(&dom, "recorded");
    let replayed_x = curve(&dom, "replayed");
    assert_eq!((recorded_x.len(), replayed_x.len()), (20, 20));
    for x in &recorded_x {
        assert!(
            (x - axis_start) / axis_len > 0.05,
            "the recorded curve sits on the axis: {recorded_x:?}"
        );
    }
    assert!(
        replayed_x.iter().all(|x| *x <= axis_start + axis_len + 0.5),
        "{replayed_x:?}"
    );
    // Decades in between are ticked.
    assert!(dom.contains(">1.0ms<") && dom.contains(">10.0ms<"), "ticks");
}
