//! Recordings on Kafka, through the real binary: `kafka://BROKER/TOPIC`
//! wherever a tape path goes. The broker is librdkafka's mock cluster (a
//! real Kafka listener on 127.0.0.1, served by this test process); nginx
//! is the recorded service.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use support::{Nginx, Recorder, calls, counter, curl, eventually, reprise, text};

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of `brokers` with `topics` (name, partitions).
fn cluster(brokers: i32, topics: &[(&str, i32)]) -> Cluster {
    let cluster = MockCluster::new(brokers).unwrap();
    for (topic, partitions) in topics {
        cluster.create_topic(topic, *partitions, 1).unwrap();
    }
    cluster
}

fn topic(cluster: &Cluster, topic: &str) -> PathBuf {
    PathBuf::from(format!("kafka://{}/{topic}", cluster.bootstrap_servers()))
}

fn url(nginx: &Nginx) -> String {
    format!("http://{}", nginx.http1)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `reprise diff RECORDED REPLAYED`, which must pass: its JSON report.
fn diff_passes(recorded: &Path, replayed: &Path) -> serde_json::Value {
    let json = tempfile::NamedTempFile::new().unwrap();
    let diff = reprise(&["diff", s(recorded), s(replayed), "--json", s(json.path())]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        text(&diff.stdout),
        text(&diff.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap()
}

#[test]
fn a_recording_into_a_topic_is_read_back_by_ls_stats_replay_and_diff() {
    let cluster = cluster(3, &[("exchanges", 6), ("results", 3)]);
    let nginx = Nginx::serving(&[("a.json", r#"{"ok":true}"#)]);
    let exchanges = topic(&cluster, "exchanges");
    let recorder = Recorder::start(&url(&nginx), &exchanges, &[]);
    calls(&recorder, "n", 60);
    let stderr = recorder.stop_cleanly("-INT");
    assert!(
        stderr.contains(&format!(
            "60 exchanges seen, 60 recorded; topic {} synced",
            s(&exchanges)
        )),
        "{stderr}"
    );

    let ls = reprise(&["ls", s(&exchanges)]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    let listed = text(&ls.stdout);
    assert_eq!(listed.matches("/a.json?n=").count(), 60, "{listed}");
    for i in 0..60 {
        let target = format!("/a.json?n={i}");
        assert!(
            listed.lines().any(|l| l.ends_with(&target)),
            "{target}: {listed}"
        );
    }
    let stats = reprise(&["stats", s(&exchanges), "--json"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["exchanges"], 60, "{stats}");

    // Replayed into a topic of its own, and compared with the recording.
    let results = topic(&cluster, "results");
    let replay = reprise(&[
        "replay",
        s(&exchanges),
        "--target",
        &url(&nginx),
        "--out",
        s(&results),
    ]);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let report = diff_passes(&exchanges, &results);
    assert_eq!(report["pairs"], 60, "{report}");
    assert_eq!(report["identical"], 60, "{report}");

    // A tape and a topic compare alike.
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("replayed.tape");
    let replay = reprise(&[
        "replay",
        s(&exchanges),
        "--target",
        &url(&nginx),
        "--out",
        s(&tape),
    ]);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let diff = reprise(&["diff", s(&exchanges), s(&tape)]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
}

#[test]
fn a_broker_that_goes_away_costs_recorded_exchanges_never_calls_and_recording_resumes() {
    let cluster = cluster(1, &[("flaky", 2)]);
    let nginx = Nginx::serving(&[("a.json", r#"{"ok":true}"#)]);
    let flaky = topic(&cluster, "flaky");
    let recorder = Recorder::start(
        &url(&nginx),
        &flaky,
        &[
            "--admin",
            "127.0.0.1:0",
            // A small producer queue: the outage fills it at once.
            "--kafka-option",
            "queue.buffering.max.messages=5",
        ],
    );
    // One at a time, each recorded before the next: the queue holds 5.
    for i in 0..10 {
        calls(&recorder, &format!("before{i}x"), 1);
        recorder.wait_for_counter("reprise_exchanges_recorded_total", i + 1);
    }
    cluster.broker_down(1).unwrap();
    // Clients see nothing of it: every call answered, none slowed to
    // the broker's pace.
    let started = Instant::now();
    calls(&recorder, "during", 40);
    assert!(started.elapsed() < Duration::from_secs(10));
    let dropped = "reprise_exchanges_dropped_total{reason=\"sink_error\"}";
    eventually("drops counted", 20, || {
        counter(&recorder.metrics(), dropped) >= 35
    });
    let (code, health) = recorder.health();
    assert_eq!(code, "503", "{health}");
    assert!(health.contains("queue is full"), "{health}");
    cluster.broker_up(1).unwrap();
    // Recording resumes: later calls reach the topic.
    let recorded = "reprise_exchanges_recorded_total";
    let mut more = 0;
    eventually("recording resumes", 30, || {
        calls(&recorder, &format!("after{more}"), 1);
        more += 1;
        let metrics = recorder.metrics();
        counter(&metrics, recorded) > 10 + 5 && recorder.health().0 == "200"
    });
    let stderr = recorder.stop_cleanly("-INT");
    let seen = 10 + 40 + more;
    assert!(
        stderr.contains(&format!("{seen} exchanges seen, ")),
        "{seen}: {stderr}"
    );
    assert!(
        stderr.contains(
            "dropped (the producer's queue was full: the broker was slow or unreachable)"
        ),
        "{stderr}"
    );
    let ls = reprise(&["ls", s(&flaky)]);
    let listed = text(&ls.stdout);
    assert_eq!(listed.matches("/a.json?before").count(), 10, "{listed}");
    assert!(
        listed.contains(&format!("/a.json?after{}=0", more - 1)),
        "{listed}"
    );
}

#[test]
fn unreachable_brokers_missing_topics_bad_addresses_and_foreign_messages_are_clear() {
    // Nobody listens on this port: record refuses to start, within its
    // bound, and leaves nothing behind.
    let port = support::free_port();
    let nowhere = format!("kafka://127.0.0.1:{port}/t");
    let nginx = Nginx::serving(&[("a.json", "{}")]);
    let started = Instant::now();
    let out = reprise(&[
        "record",
        "--upstream",
        &url(&nginx),
        "--listen",
        "127.0.0.1:0",
        "--out",
        &nowhere,
    ]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!("{nowhere}: no broker answered within 10s")),
        "{said}"
    );

    let cluster = cluster(1, &[("mixed", 1)]);
    let absent = topic(&cluster, "absent");
    for command in ["ls", "stats"] {
        let out = reprise(&[command, s(&absent)]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains("topic \"absent\" does not exist on the cluster"),
            "{}",
            text(&out.stderr)
        );
    }
    for (address, says) in [
        ("kafka://127.0.0.1/t", "expected HOST:PORT"),
        ("kafka://127.0.0.1:9/", "no topic"),
        (
            "kafka://127.0.0.1:9/t?partition=1",
            "unknown option \"partition\"",
        ),
    ] {
        let out = reprise(&["ls", address]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains(says),
            "{address}: {}",
            text(&out.stderr)
        );
    }
    let out = reprise(&[
        "ls",
        s(&topic(&cluster, "mixed")),
        "--kafka-option",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--kafka-option \"nonsense\": expected KEY=VALUE"));
    // What a group of replayers does not do, said before anything is sent.
    let grouped = format!("{}?group=g", s(&topic(&cluster, "mixed")));
    let timed = format!(
        "{}?group=g&from=2026-12-07T10:00:00Z",
        s(&topic(&cluster, "mixed"))
    );
    for (args, says) in [
        (
            vec![grouped.as_str(), "--compare"],
            "--compare and --dry-run do not go with group=",
        ),
        (
            vec![grouped.as_str(), "--dry-run"],
            "--compare and --dry-run do not go with group=",
        ),
        (
            vec![grouped.as_str(), "--loop"],
            "--loop does not go with group=",
        ),
        (vec![timed.as_str()], "from=TIME does not go with group="),
    ] {
        let mut command = vec!["replay"];
        command.extend(args.iter().copied());
        command.extend(["--target", "http://127.0.0.1:9"]);
        let out = reprise(&command);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A reader of the whole topic is not a group member.
    let out = reprise(&["ls", &grouped]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("leave group= out"),
        "{}",
        text(&out.stderr)
    );

    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/httpbin.har");
    let out = reprise(&["import", s(&har), "--out", s(&topic(&cluster, "mixed"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a Kafka topic cannot be written here"),
        "{}",
        text(&out.stderr)
    );

    // A record, then a message another program wrote: the record is
    // listed, the message named and skipped, exit 3 (damaged input).
    let recorder = Recorder::start(&url(&nginx), &topic(&cluster, "mixed"), &[]);
    calls(&recorder, "n", 1);
    recorder.stop_cleanly("-INT");
    {
        use rdkafka::ClientConfig;
        use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        producer
            .send(BaseRecord::to("mixed").payload("\u{1b}[31mhello").key("k"))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    let out = reprise(&["ls", s(&topic(&cluster, "mixed"))]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("/a.json?n=0").count(), 1);
    assert!(
        text(&out.stderr).contains(
            "/mixed: partition 0 offset 1: not a reprise record, skipped: no reprise-schema header"
        ),
        "{}",
        text(&out.stderr)
    );

    // SASL the cluster does not speak: a clear error naming it, in bound.
    let out = reprise(&[
        "ls",
        s(&topic(&cluster, "mixed")),
        "--kafka-option",
        "security.protocol=SASL_PLAINTEXT",
        "--kafka-option",
        "sasl.mechanism=PLAIN",
        "--kafka-option",
        "sasl.username=reprise",
        "--kafka-option",
        "sasl.password=not-shown",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(said.to_lowercase().contains("sasl"), "{said}");
    assert!(!said.contains("not-shown"), "{said}");
}

#[test]
fn a_mock_writes_the_calls_it_answered_to_a_topic() {
    let cluster = cluster(1, &[("calls", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("recorded.tape");
    support::write_exchanges(&tape, &[support::answered(1, r#"{"n":1}"#)]);
    let calls_topic = topic(&cluster, "calls");
    let mock = Recorder::mock(&tape, &["--inbound", "--out", s(&calls_topic)]);
    let (body, _) = curl(&["-H", "host: shop.internal:8080", &mock.url("/calls/1")]);
    assert_eq!(body, r#"{"n":1}"#);
    mock.stop_cleanly("-INT");
    let ls = reprise(&["ls", s(&calls_topic)]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert_eq!(
        text(&ls.stdout).matches("/calls/1").count(),
        1,
        "{}",
        text(&ls.stdout)
    );
}

/// The offsets group `group` has committed on `topic`, summed.
fn committed(cluster: &Cluster, group: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(5)) else {
        return 0;
    };
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(at) => at,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_group_of_replayers_shares_a_topic_and_takes_over_from_one_killed_mid_run() {
    let cluster = cluster(1, &[("recorded", 6), ("results", 3)]);
    let nginx = Nginx::serving(&[("a.json", r#"{"ok":true}"#)]);
    let recorded = topic(&cluster, "recorded");
    let recorder = Recorder::start(&url(&nginx), &recorded, &[]);
    calls(&recorder, "n", 120);
    recorder.stop_cleanly("-INT");

    let results = topic(&cluster, "results");
    let grouped = format!("{}?group=replayers", s(&recorded));
    let member = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reprise"));
        command
            .args([
                "replay",
                &grouped,
                "--target",
                &url(&nginx),
                "--out",
                s(&results),
            ])
            // 10 calls a second each: slow enough to kill one mid-run;
            // few connections each (the test's nginx takes 64 in all).
            .args(["--rate", "10", "--concurrency", "4", "-q"])
            // Rebalances in seconds, not the default 45.
            .args(["--kafka-option", "session.timeout.ms=6000"])
            .args(["--kafka-option", "heartbeat.interval.ms=500"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut doomed = member();
    let survivors = [member(), member()];
    // Killed once the group has committed some of the work.
    eventually("the group commits", 30, || {
        committed(&cluster, "replayers", "recorded", 6) >= 15
    });
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let mut replayed = 0;
    for survivor in survivors {
        let out = survivor.wait_with_output().unwrap();
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{said}");
        let calls: u64 = said
            .split("this member replayed ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{said}"));
        replayed += calls;
    }
    assert!(replayed > 0);
    assert_eq!(committed(&cluster, "replayers", "recorded", 6), 120);

    // The results of all three, merged: every recorded exchange compared
    // once, however many were replayed twice.
    let report = diff_passes(&recorded, &results);
    assert_eq!(report["pairs"], 120, "{report}");
    assert_eq!(report["identical"], 120, "{report}");
    assert!(
        report["not_compared"].as_object().unwrap().is_empty(),
        "{report}"
    );
}

#[test]
fn copy_moves_recordings_between_tapes_topics_and_har_files() {
    let cluster = cluster(1, &[("copied", 3), ("har", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("recorded.tape");
    let exchanges: Vec<_> = (0..300)
        .map(|i| support::answered(i, &format!(r#"{{"n":{i}}}"#)))
        .collect();
    support::write_exchanges(&tape, &exchanges);

    // Tape -> topic -> tape: the same exchanges.
    let copied = topic(&cluster, "copied");
    let out = reprise(&["copy", s(&tape), s(&copied)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!(
            "copied 300 exchanges from {} to topic {}",
            s(&tape),
            s(&copied)
        )),
        "{}",
        text(&out.stdout)
    );
    let back = dir.path().join("back.tape");
    let out = reprise(&["copy", s(&copied), s(&back), "--path", "/calls/1*"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut read = support::read_tape(&back);
    read.sort_by_key(|e| e.request.as_ref().unwrap().path.clone());
    let mut want: Vec<_> = exchanges
        .iter()
        .filter(|e| e.request.as_ref().unwrap().path.starts_with("/calls/1"))
        .cloned()
        .collect();
    want.sort_by_key(|e| e.request.as_ref().unwrap().path.clone());
    assert_eq!(read.len(), 111);
    assert_eq!(read, want);
    // An existing tape is not written over.
    let out = reprise(&["copy", s(&copied), s(&back)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A HAR file (46 calls to httpbin, recorded by mitmproxy) streams
    // into a topic, redacted on the way.
    let har = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/httpbin.har");
    let out = reprise(&["copy", s(&har), s(&topic(&cluster, "har"))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = reprise(&["stats", s(&topic(&cluster, "har")), "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["exchanges"], 46, "{stats}");

    // Nowhere to copy to: a clear error, nothing left behind.
    let out = reprise(&["copy", s(&tape), s(&topic(&cluster, "absent"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    let missing = dir.path().join("missing.tape");
    let out = reprise(&["copy", s(&missing), s(&dir.path().join("x.tape"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("x.tape").exists());
}
