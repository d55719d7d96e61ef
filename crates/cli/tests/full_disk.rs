//! `reprise record` on a disk that fills up and frees again: a small
//! tmpfs mounted in a mount namespace of the test's own (`unshare -m`), so
//! the mount cannot outlive the test. The recorder runs under a shell in
//! that namespace; the test fills and frees the disk from inside it
//! (`nsenter` into the shell's mount namespace).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use reprise_testkit::full_disk::assert_mounting_allowed;
use reprise_testkit::target::{Behaviour, Target};

mod support;
use support::*;

/// Mounts a 1 MiB tmpfs on `$1` and records into `$1/x.tape` until
/// SIGTERM, which it passes on; then copies the tape out to `$2` (the
/// tmpfs goes with the namespace) and exits with reprise's code.
const IN_NAMESPACE: &str = r#"
mount -t tmpfs -o size=1m,mode=0700 tmpfs "$1" || exit 97
"$3" record --listen 127.0.0.1:0 --upstream "$4" --out "$1/x.tape" \
    --admin 127.0.0.1:0 --threads 1 --compression none &
pid=$!
stopping=
trap 'stopping=1; kill -TERM $pid' TERM
wait $pid
code=$?
if [ -n "$stopping" ] && [ $code -gt 128 ]; then wait $pid; code=$?; fi
cp "$1/x.tape" "$2/x.tape" || exit 98
exit $code
"#;

/// `reprise record` into `$disk/x.tape` on a 1 MiB tmpfs of its own,
/// forwarding to `upstream`; the tape is copied to `out` at the end.
fn record_on_a_small_disk(disk: &Path, out: &Path, upstream: &str) -> Recorder {
    assert_mounting_allowed(disk);
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(IN_NAMESPACE)
        .arg("sh")
        .arg(disk)
        .arg(out)
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .arg(upstream);
    Recorder::spawn(command)
}

/// Runs `script` (given the mount point as `$0`) in the recorder's mount
/// namespace, and gives its stdout.
fn inside(recorder: &Recorder, disk: &Path, script: &str) -> Vec<u8> {
    let out = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", recorder.pid()))
        .args(["--", "sh", "-c", script])
        .arg(disk)
        .output()
        .unwrap();
    out.stdout
}

/// Fills the disk: a filler file takes every block left.
fn fill(recorder: &Recorder, disk: &Path) {
    inside(
        recorder,
        disk,
        r#"dd if=/dev/zero of="$0/filler" bs=4k 2>/dev/null; df -k "$0" | tail -1"#,
    );
}

fn free(recorder: &Recorder, disk: &Path) {
    inside(recorder, disk, r#"rm "$0/filler""#);
}

/// 8 KiB of body: with `--compression none`, every block needs pages the
/// full disk does not have (the tape's last page has room for less).
fn call(recorder: &Recorder, i: usize) {
    let body = format!("{i:04}").repeat(2048);
    curl(&["--data-binary", &body, &recorder.url(&format!("/call/{i}"))]);
}

const RECORDED: &str = "reprise_exchanges_recorded_total";
const WRITE_FAILED: &str = "reprise_exchanges_dropped_total{reason=\"write_failed\"}";

/// seen = recorded + skipped + dropped, over every reason `/metrics` has.
fn assert_every_exchange_counted_once(text: &str) {
    let sum = |family: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(family))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let seen = counter(text, "reprise_exchanges_seen_total");
    assert_eq!(
        seen,
        counter(text, RECORDED)
            + sum("reprise_exchanges_skipped_total{")
            + sum("reprise_exchanges_dropped_total{"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_recording_which_resumes_when_space_returns() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let out = dir.path().join("out");
    std::fs::create_dir(&disk).unwrap();
    std::fs::create_dir(&out).unwrap();
    let recorder = record_on_a_small_disk(&disk, &out, &target.url());
    let mut lines = Vec::new();

    // Room: recorded.
    for i in 0..10 {
        call(&recorder, i);
    }
    recorder.wait_for_counter(RECORDED, 10);
    assert_eq!(recorder.health(), ("200".into(), "ok\n".into()));

    // Full: said at once, /healthz says why, every exchange counted as
    // write_failed, and the tape ends at its last sealed block.
    fill(&recorder, &disk);
    for i in 10..20 {
        call(&recorder, i);
    }
    let degraded = recorder.line_with("recording degraded", &mut lines);
    assert!(
        degraded.contains("No space left on device") && degraded.contains("x.tape"),
        "{degraded}"
    );
    let text = recorder.wait_for_counter(WRITE_FAILED, 10);
    assert_eq!(counter(&text, RECORDED), 10);
    assert_every_exchange_counted_once(&text);
    assert!(
        text.lines().any(|l| l == "reprise_recording_degraded 1"),
        "{text}"
    );
    let (code, body) = recorder.health();
    assert_eq!(code, "503", "{body}");
    assert!(
        body.starts_with("degraded: tape ") && body.contains("No space left on device"),
        "{body}"
    );
    let during = out.join("during.tape");
    std::fs::write(&during, inside(&recorder, &disk, r#"cat "$0/x.tape""#)).unwrap();
    let read: Vec<_> = reprise_tape::TapeReader::open(&during).unwrap().collect();
    assert_eq!(
        read.len(),
        10,
        "no torn tail, nothing after the sealed blocks"
    );
    assert!(read.iter().all(Result::is_ok), "{read:?}");

    // Space again: resumed, in a block after the last sealed one.
    free(&recorder, &disk);
    for i in 20..30 {
        call(&recorder, i);
    }
    recorder.line_with("recording resumed", &mut lines);
    let text = recorder.wait_for_counter(RECORDED, 20);
    assert_eq!(counter(&text, WRITE_FAILED), 10);
    assert_every_exchange_counted_once(&text);
    assert_eq!(recorder.health(), ("200".into(), "ok\n".into()));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("recording degraded"))
            .count(),
        0,
        "said once: {lines:?}"
    );

    // Full again, and stopped while full: a clean tape, every exchange
    // counted once.
    fill(&recorder, &disk);
    for i in 30..35 {
        call(&recorder, i);
    }
    let (code, stderr) = recorder.stop("-TERM");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr
            .contains("35 exchanges seen, 20 recorded, 15 dropped (the tape could not be written)"),
        "{stderr}"
    );
    let tape = out.join("x.tape");
    let exchanges: Vec<_> = reprise_tape::TapeReader::open(&tape)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let paths: Vec<String> = exchanges
        .iter()
        .map(|e| e.request.as_ref().unwrap().path.clone())
        .collect();
    let want: Vec<String> = (0..10)
        .chain(20..30)
        .map(|i| format!("/call/{i}"))
        .collect();
    assert_eq!(paths, want);
}

/// A test that fails with the recorder running leaves nothing behind: the
/// shell under `unshare` is not the only process ended, its reprise (which
/// holds the port and the namespace's tmpfs) goes too.
#[test]
fn dropping_the_recorder_ends_the_reprise_its_shell_started() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let out = dir.path().join("out");
    std::fs::create_dir(&disk).unwrap();
    std::fs::create_dir(&out).unwrap();
    let recorder = record_on_a_small_disk(&disk, &out, "http://127.0.0.1:9");
    let addr = recorder.addr;
    assert!(TcpStream::connect(addr).is_ok(), "serving before the drop");
    drop(recorder);
    support::eventually(
        &format!("reprise stops serving on {addr} after the drop"),
        10,
        || TcpStream::connect(addr).is_err(),
    );
}
