//! `reprise record --rotate-size/--rotate-every/--keep`: a directory of
//! tapes, read back as one recording by every reader (the directory, or
//! a glob of its tapes), and followed across rotations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Nginx, Recorder, calls, reprise, s, text};

/// A JSON body of 4 KiB that zstd cannot shrink much: a few calls fill
/// a small tape.
fn body() -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let pad: String = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(state % 36) as usize])
        })
        .collect();
    format!(r#"{{"pad":"{pad}"}}"#)
}

fn tapes(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_rotated_recording_is_read_back_whole_and_keeps_the_newest_tapes() {
    let nginx = Nginx::serving(&[("a.json", &body())]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let upstream = format!("http://{}", nginx.http1);
    let recorder = Recorder::start(
        &upstream,
        &out,
        &["--rotate-size", "8KiB", "--threads", "1"],
    );
    for batch in 0..20 {
        calls(&recorder, &format!("b{batch}x"), 10);
    }
    let stderr = recorder.stop_cleanly("-INT");
    assert!(
        stderr.contains(&format!(
            "200 exchanges seen, 200 recorded; tapes in {} synced",
            out.display()
        )),
        "{stderr}"
    );
    let names = tapes(&out);
    assert!(names.len() > 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("reprise-") && n.ends_with(".tape")),
        "{names:?}"
    );
    let mode = std::fs::metadata(&out).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );

    // The directory, and a glob of its tapes, read as one recording.
    let stats = reprise(&["stats", s(&out), "--json"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["exchanges"], 200, "{stats}");
    let glob = out.join("reprise-*.tape");
    let ls = reprise(&["ls", s(&glob)]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert_eq!(text(&ls.stdout).matches("/a.json?b").count(), 200);
    let first = out.join(&names[0]);
    let ls = reprise(&["ls", s(&first)]);
    let in_first = text(&ls.stdout).matches("/a.json?b").count();
    assert!(in_first > 0 && in_first < 200, "{in_first}");

    // --keep 2: a second recording into the directory leaves the newest 2.
    let recorder = Recorder::start(
        &upstream,
        &out,
        &["--rotate-size", "8KiB", "--keep", "2", "--threads", "1"],
    );
    calls(&recorder, "kept", 60);
    recorder.stop_cleanly("-INT");
    let kept = tapes(&out);
    assert_eq!(kept.len(), 2, "{kept:?}");
    // The newest: this run's last tape, and the one before it (of this
    // run, or the first run's last).
    assert!(!names.contains(&kept[1]), "{kept:?} vs {names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.as_str() >= kept[0].as_str() || !kept.contains(n))
    );
    let ls = reprise(&["ls", s(&out)]);
    let listed = text(&ls.stdout);
    assert!(
        listed.lines().last().unwrap().ends_with("/a.json?kept=59"),
        "{listed}"
    );
}

#[test]
fn ls_follows_a_rotated_recording_across_its_tapes() {
    let nginx = Nginx::serving(&[("a.json", &body())]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live");
    let upstream = format!("http://{}", nginx.http1);
    let recorder = Recorder::start(
        &upstream,
        &out,
        &["--rotate-size", "8KiB", "--threads", "1"],
    );
    let mut follower = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["ls", "--follow", s(&out)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Each batch lands (over several tapes) before the next is sent.
    for batch in 0..5 {
        calls(&recorder, &format!("f{batch}x"), 12);
        let mut seen = 0;
        while seen < 12 {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("batch {batch}: {seen} of 12 followed"));
            if line.contains(&format!("/a.json?f{batch}x=")) {
                seen += 1;
            }
        }
    }
    recorder.stop_cleanly("-INT");
    assert!(tapes(&out).len() >= 2, "{:?}", tapes(&out));
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn rotation_flags_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    for (flags, says) in [
        (
            vec!["--keep", "3"],
            "--keep goes with --rotate-size or --rotate-every",
        ),
        (vec!["--rotate-size", "0"], "above 0"),
        (
            vec!["--rotate-every", "1h", "--keep", "0"],
            "--keep 0 would remove the tape being written",
        ),
        (vec!["--rotate-size", "lots"], "--rotate-size"),
    ] {
        let mut args = vec![
            "record",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--out",
            s(&out),
        ];
        args.extend(flags.iter().copied());
        let run = reprise(&args);
        assert_eq!(run.status.code(), Some(2), "{flags:?}");
        assert!(
            text(&run.stderr).contains(says),
            "{flags:?}: {}",
            text(&run.stderr)
        );
    }
    let run = reprise(&[
        "record",
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--out",
        "kafka://127.0.0.1:9/t",
        "--rotate-size",
        "1M",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        text(&run.stderr).contains("write a directory of tapes, not a topic"),
        "{}",
        text(&run.stderr)
    );
    // A file where the directory would go.
    std::fs::write(&out, b"x").unwrap();
    let run = reprise(&[
        "record",
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--out",
        s(&out),
        "--rotate-every",
        "1h",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        text(&run.stderr).contains("is not a directory"),
        "{}",
        text(&run.stderr)
    );
}
