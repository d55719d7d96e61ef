//! The real `reprise` binary on real recordings: the shared GoReplay
//! capture, the mitmproxy sample, and tapes damaged on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gor_fixture() -> PathBuf {
    root().join("tests/fixtures/goreplay/datadog-ecommerce-requests_0.gor")
}

fn sample_har() -> PathBuf {
    root().join("samples/httpbin.har")
}

fn reprise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(args)
        .output()
        .expect("runs the binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let output = reprise(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "reprise {args:?}\nstderr: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn import(input: &Path, dir: &Path, name: &str) -> PathBuf {
    let tape = dir.join(name);
    let out = ok(&["import", s(input), "--out", s(&tape)]);
    assert!(out.starts_with("imported "), "{out}");
    tape
}

/// [`import`] without redaction: the file's exchanges exactly.
fn import_as_is(input: &Path, dir: &Path, name: &str) -> PathBuf {
    let tape = dir.join(name);
    let out = ok(&[
        "import",
        s(input),
        "--out",
        s(&tape),
        "--no-default-redaction",
    ]);
    assert!(out.starts_with("imported "), "{out}");
    tape
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn goreplay_capture_imports_lists_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let tape = import(&gor_fixture(), dir.path(), "gor.tape");
    let mode = std::fs::metadata(&tape).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "tapes are private");

    let listing = ok(&["ls", s(&tape)]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 102, "header + 101 exchanges");
    assert!(lines[0].starts_with("ID "));
    assert!(lines[1].starts_with("b33c9c1a2bae6636d5389a1a47035170c58d367e"));
    assert!(
        lines[1].contains("2019-09-10T18:22:26.437Z"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("localhost:3000/"), "{}", lines[1]);

    let json = json_lines(&ok(&["ls", s(&tape), "--json", "--method", "post"]));
    assert_eq!(json.len(), 2);
    assert!(json.iter().all(|j| j["method"] == "POST"
        && j["status"].is_null()
        && j["request_bytes"].as_u64() > Some(0)));

    let stats: Value = serde_json::from_str(&ok(&["stats", s(&tape), "--json"])).unwrap();
    assert_eq!(stats["exchanges"], 101);
    assert_eq!(stats["statuses"]["none"], 101, "requests without responses");
    assert_eq!(stats["protocols"]["h1"], 101);

    // The same listing straight from the .gor file, no tape needed.
    assert_eq!(ok(&["ls", s(&gor_fixture())]), listing);
}

#[test]
fn filters_select_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let tape = import(&sample_har(), dir.path(), "s.tape");
    let count = |args: &[&str]| {
        let mut all = vec!["ls", s(&tape), "--json"];
        all.extend_from_slice(args);
        json_lines(&ok(&all)).len()
    };
    assert_eq!(count(&[]), 46);
    assert_eq!(count(&["--status", "5xx"]), 2);
    assert_eq!(count(&["--status", "404,500"]), 2);
    assert_eq!(count(&["--path", "/status/*"]), 4);
    assert_eq!(count(&["--method", "PUT,PATCH"]), 2);
    assert_eq!(count(&["--limit", "5"]), 5);
    assert_eq!(count(&["--match", "header=x-tenant:acme"]), 2);
    assert_eq!(count(&["--match", "protocol=h2"]), 0);
    let all = json_lines(&ok(&["ls", s(&tape), "--json"]));
    let tenth = all[9]["recorded_at_ns"].as_u64().unwrap();
    let since = tenth.to_string();
    let after: Vec<Value> = json_lines(&ok(&["ls", s(&tape), "--json", "--since", &since]));
    assert!(
        after
            .iter()
            .all(|j| j["recorded_at_ns"].as_u64().unwrap() >= tenth)
    );
    assert_eq!(
        after.len(),
        all.iter()
            .filter(|j| j["recorded_at_ns"].as_u64().unwrap() >= tenth)
            .count()
    );
    let until = all[0]["recorded_at"].as_str().unwrap();
    assert_eq!(count(&["--until", until]), 0, "--until is exclusive");
}

#[test]
fn show_finds_by_prefix_and_renders_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let tape = import(&sample_har(), dir.path(), "s.tape");
    let all = json_lines(&ok(&["ls", s(&tape), "--json", "--path", "/image/png"]));
    let id = all[0]["id"].as_str().unwrap();
    let shown = ok(&["show", s(&tape), &id[..20]]);
    assert!(
        shown.starts_with(&format!("exchange {id}  (inbound, h1)")),
        "{shown}"
    );
    assert!(shown.contains("< 200 OK\n"), "{shown}");
    assert!(
        shown.contains("00000000  89 50 4e 47"),
        "PNG as a hex dump:\n{shown}"
    );

    let json: Value = serde_json::from_str(&ok(&["show", s(&tape), id, "--json"])).unwrap();
    assert_eq!(json["id"], id);
    assert_eq!(json["response"]["body_encoding"], "base64");
    assert_eq!(json["downstream"], Value::Array(vec![]));

    let posts = json_lines(&ok(&[
        "ls",
        s(&tape),
        "--json",
        "--path",
        "/anything/orders",
    ]));
    let post = posts.iter().find(|p| p["method"] == "POST").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = ok(&["show", s(&tape), &post]);
    assert!(
        shown.contains("{\n  \"customer\": {\n    \"id\": 7,"),
        "JSON pretty, key order kept:\n{shown}"
    );
}

#[test]
fn show_nests_downstream_calls_stored_before_their_parent() {
    use reprise_model::{Exchange, Request, Response, Role};
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("nested.tape");
    let parent_id = vec![0xab; 16];
    let call = |id: u8, parent: Option<&Vec<u8>>, path: &str, at: u64| Exchange {
        id: vec![id; 16],
        parent_id: parent.cloned().unwrap_or_default(),
        role: if parent.is_some() {
            Role::Downstream
        } else {
            Role::Inbound
        } as i32,
        recorded_at_ns: at,
        duration_ns: 1_000_000,
        request: Some(Request {
            method: "GET".into(),
            authority: "svc".into(),
            path: path.into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut writer =
        reprise_tape::TapeWriter::create(&tape, reprise_tape::WriterOptions::default()).unwrap();
    writer
        .write(&call(1, Some(&parent_id), "/inventory", 20))
        .unwrap();
    writer
        .write(&call(2, Some(&parent_id), "/pricing", 10))
        .unwrap();
    writer.write(&call(3, None, "/other", 5)).unwrap();
    let mut parent = call(0, None, "/checkout", 0);
    parent.id = parent_id.clone();
    writer.write(&parent).unwrap();
    writer.finish().unwrap();

    let shown = ok(&["show", s(&tape), "abababab"]);
    let pricing = shown.find("> GET http://svc/pricing").unwrap();
    let inventory = shown.find("> GET http://svc/inventory").unwrap();
    assert!(shown.contains("downstream calls (2):"), "{shown}");
    assert!(pricing < inventory, "children in time order:\n{shown}");
    assert!(!shown.contains("/other"));
    let listing = ok(&["ls", s(&tape)]);
    assert!(listing.contains("↳GET"), "{listing}");
    let json: Value = serde_json::from_str(&ok(&["show", s(&tape), "abababab", "--json"])).unwrap();
    assert_eq!(json["downstream"].as_array().unwrap().len(), 2);
}

#[test]
fn har_round_trip_through_a_tape() {
    let dir = tempfile::tempdir().unwrap();
    // As is: the sample holds cookies and credentials redaction replaces.
    let tape = import_as_is(&sample_har(), dir.path(), "s.tape");
    let exported = dir.path().join("out.har");
    let output = reprise(&["export", s(&tape), "--har", s(&exported)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim(),
        format!("exported 46 exchanges to {}", exported.display())
    );
    let again = import_as_is(&exported, dir.path(), "again.tape");
    let first = ok(&["ls", s(&tape), "--json"]);
    assert_eq!(
        ok(&["ls", s(&again), "--json"]),
        first,
        "same exchanges, same ids"
    );
    let before: Value = serde_json::from_slice(&std::fs::read(sample_har()).unwrap()).unwrap();
    let after: Value = serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    for (b, a) in before["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["log"]["entries"].as_array().unwrap())
    {
        assert_eq!(b["request"]["method"], a["request"]["method"]);
        assert_eq!(b["request"]["url"], a["request"]["url"]);
        assert_eq!(b["request"]["headers"], a["request"]["headers"]);
        assert_eq!(b["response"]["status"], a["response"]["status"]);
        assert_eq!(b["response"]["headers"], a["response"]["headers"]);
        assert_eq!(
            b["response"]["content"]["text"],
            a["response"]["content"]["text"]
        );
        // An empty body is an empty body, whether postData says "" or is absent.
        let post = |v: &Value| {
            v["request"]["postData"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(post(b), post(a));
    }
    // A filtered export to stdout.
    let har: Value =
        serde_json::from_str(&ok(&["export", s(&tape), "--har", "-", "--status", "5xx"])).unwrap();
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
}

/// A tape of 60 exchanges in small blocks, and its block index.
fn multi_block_tape(dir: &Path) -> (PathBuf, Vec<reprise_tape::format::BlockHeader>) {
    let path = dir.join("blocks.tape");
    let options = reprise_tape::WriterOptions {
        block_bytes: 16 << 10,
        ..Default::default()
    };
    let mut writer = reprise_tape::TapeWriter::create(&path, options).unwrap();
    for i in 0..60 {
        writer
            .write(&reprise_model::synthetic::realistic(i))
            .unwrap();
    }
    writer.finish().unwrap();
    let (blocks, _) = reprise_tape::block_index(&path).unwrap();
    assert!(blocks.len() >= 4);
    (path, blocks)
}

#[test]
fn damaged_tapes_print_the_intact_part_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let (path, blocks) = multi_block_tape(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let victim = blocks[1];
    bytes[victim.offset as usize + 100] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let output = reprise(&["ls", s(&path), "--json"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        json_lines(&stdout(&output)).len(),
        60 - victim.count as usize
    );
    assert_eq!(
        stderr(&output).trim(),
        format!(
            "reprise: tape {}: block 1 at offset {} ({} bytes) fails its checksum; skipped",
            path.display(),
            victim.offset,
            victim.end() - victim.offset
        )
    );
    let output = reprise(&["stats", s(&path), "--json"]);
    assert_eq!(output.status.code(), Some(3));
    let stats: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stats["exchanges"], 60 - u64::from(victim.count));

    // A crash mid-write: the torn tail is reported, the rest is read.
    let last = *blocks.last().unwrap();
    std::fs::write(&path, &bytes[..last.offset as usize + 10]).unwrap();
    let output = reprise(&["ls", s(&path), "--json"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("is cut short (torn tail: an unfinished write); skipped"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_input_gets_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tape");
    let not_json = dir.path().join("broken.har");
    std::fs::write(
        &not_json,
        b"{\"log\": {\"entries\": [ {\"startedDateTime\": ",
    )
    .unwrap();
    let random = dir.path().join("random.bin");
    std::fs::write(&random, [0x13u8, 0x37, 0x00, 0xff, 0x42]).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let tape = import(&sample_har(), dir.path(), "s.tape");
    let x_tape = dir.path().join("x.tape");
    let sample = sample_har();
    let no_tapes = dir.path().join("no-tapes");
    std::fs::create_dir(&no_tapes).unwrap();
    std::fs::write(no_tapes.join("notes.txt"), b"not a tape").unwrap();
    let no_glob_dir = dir.path().join("nowhere/*.tape");
    let no_match = dir.path().join("none-*.tape");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["ls", s(&missing)], format!("{}: cannot read: No such file or directory (os error 2)", missing.display())),
        (vec!["ls", s(&no_tapes)], format!("{}: holds no tape (no .tape file matched)", no_tapes.display())),
        (vec!["ls", s(&no_match)], format!("{}: holds no tape (no .tape file matched)", dir.path().display())),
        (vec!["ls", s(&no_glob_dir)], format!("{}: no such directory", dir.path().join("nowhere").display())),
        (vec!["import", s(&no_tapes), "--out", s(&x_tape)], format!("{}: is a directory (of tapes); import reads a HAR or .gor file", no_tapes.display())),
        (vec!["stats", s(&empty)], format!("{}: empty file, not a recording", empty.display())),
        (
            vec!["ls", s(&random)],
            format!("{}: not a recording: neither a reprise tape, a HAR file nor a GoReplay file", random.display()),
        ),
        (
            vec!["import", s(&not_json), "--out", s(&x_tape)],
            format!("{}: invalid HAR at (document): not valid JSON: EOF while parsing a value at line 1 column 42", not_json.display()),
        ),
        (vec!["ls", s(&tape), "--match", "colour=red"], "invalid match \"colour=red\": expected FIELD=VALUE with FIELD one of method, path, authority, status, header, protocol".into()),
        (vec!["ls", s(&tape), "--status", "6zz"], "invalid status \"6zz\": expected a code (404), a class (5xx) or a range (200-299)".into()),
        (vec!["ls", s(&tape), "--since", "yesterday"], "--since: invalid time \"yesterday\": expected RFC 3339 (2026-11-24T10:00:00Z) or ns since the epoch".into()),
        (vec!["show", s(&tape), "0000000000"], "no exchange with id 0000000000".into()),
        (vec!["show", s(&tape), "xyz"], "invalid exchange id \"xyz\": expected hex digits (a unique prefix of at least 6)".into()),
        (vec!["import", s(&sample), "--out", s(&tape)], format!("tape {}: already exists (append to it, or choose another path)", tape.display())),
    ];
    for (args, message) in cases {
        let output = reprise(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), format!("reprise: {message}\n"), "{args:?}");
    }
    assert!(
        !dir.path().join("x.tape").exists(),
        "a failed import leaves no tape behind"
    );
    // The refused import did not touch the existing tape.
    assert_eq!(json_lines(&ok(&["ls", s(&tape), "--json"])).len(), 46);
}

#[test]
fn broken_gor_payloads_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gor = dir.path().join("broken.gor");
    let content = "1 aa01 1000000000\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n\n🐵🙈🙉\n1 bb02 1000000001\nG@T /bad HTTP/1.1\r\n\r\n\n🐵🙈🙉\n";
    std::fs::write(&gor, content).unwrap();
    let tape = dir.path().join("g.tape");
    let output = reprise(&["import", s(&gor), "--out", s(&tape)]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stdout(&output).starts_with("imported 1 exchanges from "),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        stderr(&output).trim(),
        format!(
            "reprise: {}: skipped payload 2 at byte 61: malformed HTTP request: invalid request head: invalid token",
            gor.display()
        )
    );
    assert_eq!(json_lines(&ok(&["ls", s(&tape), "--json"])).len(), 1);
}

/// Runs `reprise ARGS` where `{}` in ARGS stands for a FIFO (made with
/// mkfifo) that a `cat` of `file` writes into.
fn through_fifo(dir: &Path, file: &Path, args: &[&str]) -> Output {
    let fifo = dir.join(format!("in-{}.fifo", args[0]));
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut writer = Command::new("sh")
        .args(["-c", "cat \"$1\" > \"$2\"", "sh", s(file), s(&fifo)])
        .spawn()
        .unwrap();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "{}" { s(&fifo) } else { a })
        .collect();
    // Bounded: a reader that opens the FIFO twice waits for ever.
    let output = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .args(&args)
        .output()
        .unwrap();
    // Whatever reprise did, the writer does not outlive the test.
    let _ = writer.kill();
    let _ = writer.wait();
    std::fs::remove_file(&fifo).unwrap();
    output
}

/// A device is not a pipe: `/dev/zero` is refused at once, not copied
/// aside until the disk is full (a 1 MiB file-size limit stops the copy
/// if it starts).
#[test]
fn a_device_as_input_is_refused_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("prlimit")
        .arg("--fsize=1048576")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .args(["ls", "/dev/zero"])
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("/dev/zero: not a regular file, a FIFO or a socket"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn inputs_read_from_a_fifo_work_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let tape = import(&sample_har(), dir.path(), "s.tape");
    let same = |args: &[&str], file: &Path| {
        let fifo_args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "IN" { "{}" } else { a })
            .collect();
        let piped = through_fifo(dir.path(), file, &fifo_args);
        assert_eq!(piped.status.code(), Some(0), "{args:?}: {}", stderr(&piped));
        let file_args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "IN" { s(file) } else { a })
            .collect();
        assert_eq!(stdout(&piped), ok(&file_args), "{args:?}");
    };
    same(&["ls", "IN"], &tape);
    same(&["ls", "IN", "--json"], &sample_har());
    same(&["stats", "IN", "--json"], &tape);
    same(&["stats", "IN"], &gor_fixture());
    same(&["export", "IN", "--har", "-"], &tape);
    let first = json_lines(&ok(&["ls", s(&tape), "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    same(&["show", "IN", &first], &tape);
    // diff reads its recording more than once (to weigh it, then to pair
    // it): through a FIFO it gets as far as with the file, which is to
    // find that the second tape holds no replay.
    let output = through_fifo(dir.path(), &tape, &["diff", "{}", s(&tape)]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("{}: holds no replayed exchange", s(&tape))),
        "{}",
        stderr(&output)
    );

    let imported = dir.path().join("from-fifo.tape");
    let output = through_fifo(
        dir.path(),
        &gor_fixture(),
        &["import", "{}", "--out", s(&imported)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("imported 101 exchanges from "));

    // Following a pipe cannot work: said at once, not a hang.
    let output = through_fifo(dir.path(), &tape, &["ls", "{}", "--follow"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("is a pipe; following a tape as it grows needs the tape file itself"),
        "{}",
        stderr(&output)
    );

    // A process substitution, `reprise ls <(cat TAPE)`, is a pipe too.
    let output = Command::new("bash")
        .args([
            "-c",
            "\"$0\" ls <(cat \"$1\")",
            env!("CARGO_BIN_EXE_reprise"),
            s(&tape),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), ok(&["ls", s(&tape)]));
}

#[test]
fn import_appends_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let tape = import(&sample_har(), dir.path(), "s.tape");
    ok(&["import", s(&gor_fixture()), "--out", s(&tape), "--append"]);
    let stats: Value = serde_json::from_str(&ok(&["stats", s(&tape), "--json"])).unwrap();
    assert_eq!(stats["exchanges"], 46 + 101);
}

#[test]
fn demo_runs_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&["demo", "--dir", s(dir.path())]);
    for section in [
        "== a sample service",
        "== reprise record",
        "120 exchanges seen, 120 recorded",
        "== reprise stats",
        "== reprise ls",
        "== reprise show",
        "\"number\": \"[redacted]\"",
        "== reprise replay",
        "replay: 120 calls to http://127.0.0.1:",
        "results: 120 exchanges written",
        "== reprise diff",
        "diff: 120 pairs:",
        "$.created_at_ms",
        "--ignore '$.created_at_ms'",
        "== reprise import",
    ] {
        assert!(out.contains(section), "{section} missing:\n{out}");
    }
    assert!(
        out.contains("exchanges   120 (120 inbound, 0 downstream)"),
        "{out}"
    );
    // Product ids (`B1`) are folded into the endpoint in every table
    // (`ls` lines still show each call's path).
    assert!(out.contains("GET /api/products/{id}"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("GET /api/products/")
                && !l.trim_start().starts_with("GET /api/products/{id}")),
        "{out}"
    );
    assert!(
        !out.contains("4111111111111111") && !out.contains("demo-secret-token"),
        "{out}"
    );
    let stats: Value =
        serde_json::from_str(&ok(&["stats", s(&dir.path().join("shop.tape")), "--json"])).unwrap();
    assert_eq!(stats["exchanges"], 120);
    assert!(dir.path().join("httpbin.tape").exists());
    // The replay's results are a tape of their own, each exchange linked
    // to the one it replays.
    let replayed: Value = serde_json::from_str(&ok(&[
        "stats",
        s(&dir.path().join("replayed.tape")),
        "--json",
    ]))
    .unwrap();
    assert_eq!(replayed["exchanges"], 120);
}

#[test]
fn ls_into_a_closed_pipe_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = multi_block_tape(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["ls", s(&path)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

#[test]
fn ls_follow_prints_exchanges_as_they_are_written() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.tape");
    let options = reprise_tape::WriterOptions {
        block_age: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let mut writer = reprise_tape::TapeWriter::create(&path, options).unwrap();
    writer
        .write(&reprise_model::synthetic::realistic(0))
        .unwrap();
    writer.sync().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["ls", "--follow", "--json", s(&path)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog: if a line never comes, the child is killed and the read
    // below ends instead of hanging the suite.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .is_err()
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["path"], "/api/orders/0?expand=items&page=0");
    // Written after `ls` started: it must still show up.
    writer
        .write(&reprise_model::synthetic::realistic(1))
        .unwrap();
    writer.sync().unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["path"], "/api/orders/1?expand=items&page=1");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    writer.finish().unwrap();
    let output = reprise(&["ls", "--follow", s(&sample_har())]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--follow reads a tape as it grows"));
}

/// A user's clone has nothing beside it: no test, script or CI step may
/// read a path outside the repository. The fixtures they need live under
/// `tests/fixtures/`, with their origin and licence.
#[test]
fn tests_and_scripts_read_nothing_outside_the_repository() {
    let outside = ["..", "/shared/"].concat();
    let mut offenders = Vec::new();
    let mut stack: Vec<PathBuf> = ["crates", "scripts", "bench", ".ci", "examples", "fuzz"]
        .iter()
        .map(|dir| root().join(dir))
        .collect();
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read_to_string(&path).is_ok_and(|text| text.contains(&outside)) {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "read outside the repository: {offenders:?}"
    );
    assert!(gor_fixture().is_file(), "{}", gor_fixture().display());
}
