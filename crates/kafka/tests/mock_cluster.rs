//! A topic as a Sink and a Source, against librdkafka's mock cluster (a
//! real Kafka listener on 127.0.0.1, in this process).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use reprise_kafka::{
    GroupSource, KafkaAddress, KafkaError, KafkaOptions, KafkaSink, KafkaSource, SinkOptions,
    SourceOptions,
};
use reprise_model::{Exchange, Sink, StoreError};

fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(topic, partitions, 1).unwrap();
    cluster
}

fn address(cluster: &MockCluster<'static, DefaultProducerContext>, rest: &str) -> KafkaAddress {
    KafkaAddress::parse(&format!("kafka://{}/{rest}", cluster.bootstrap_servers())).unwrap()
}

/// `n` exchanges in `traces` traces: an inbound call and a downstream
/// call per trace, recorded a millisecond apart.
fn exchanges(n: usize, start_ns: u64) -> Vec<Exchange> {
    (0..n)
        .map(|i| {
            let mut exchange = reprise_model::synthetic::realistic(i);
            exchange.id = (i as u128).to_be_bytes().to_vec();
            exchange.trace_id = ((i / 2) as u128 + 1000).to_be_bytes().to_vec();
            exchange.recorded_at_ns = start_ns + i as u64 * 1_000_000;
            exchange
        })
        .collect()
}

fn read_all(source: KafkaSource) -> (Vec<Exchange>, Vec<StoreError>) {
    let (mut read, mut damage) = (Vec::new(), Vec::new());
    for item in source {
        match item {
            Ok(exchange) => read.push(exchange),
            Err(error) if error.is_damage() => damage.push(error),
            Err(error) => panic!("{error}"),
        }
    }
    (read, damage)
}

const T0: u64 = 1_765_000_000_000_000_000;

#[test]
fn what_a_sink_writes_a_source_reads_back_keyed_by_trace() {
    let cluster = cluster("exchanges", 6);
    let address = address(&cluster, "exchanges");
    let mut sink =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    let written = exchanges(200, T0);
    for exchange in &written {
        sink.append(exchange.clone()).unwrap();
    }
    sink.close().unwrap();
    let tally = sink.tally().unwrap();
    assert_eq!((tally.written, tally.unwritten, tally.refused), (200, 0, 0));
    assert!(sink.bytes_written().unwrap() > 200 * 100);

    let source =
        KafkaSource::open(&address, &KafkaOptions::new(), SourceOptions::default()).unwrap();
    let ends = source.ends().clone();
    let (read, damage) = read_all(source);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(read.len(), 200);
    let by_id: HashMap<&[u8], &Exchange> = written.iter().map(|e| (e.id.as_slice(), e)).collect();
    for exchange in &read {
        assert_eq!(Some(&exchange), by_id.get(exchange.id.as_slice()));
    }

    // Each trace's two calls went to one partition, in order; the six
    // partitions all got some.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "check")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..6 {
        assignment
            .add_partition_offset("exchanges", partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut partition_of: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut partitions = HashSet::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen < 200 && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        seen += 1;
        let key = message.key().unwrap().to_vec();
        partitions.insert(message.partition());
        let at = *partition_of
            .entry(key.clone())
            .or_insert(message.partition());
        assert_eq!(at, message.partition(), "a trace split across partitions");
        let exchange = reprise_model::decode(message.payload().unwrap()).unwrap();
        assert_eq!(exchange.trace_id, key);
        assert_eq!(
            message.timestamp().to_millis(),
            Some((exchange.recorded_at_ns / 1_000_000) as i64)
        );
    }
    assert_eq!(seen, 200);
    assert_eq!(partition_of.len(), 100);
    assert!(partitions.len() > 1, "{partitions:?}");

    // Written after the first open: a second reader with the first's
    // ends reads the same 200.
    let mut more =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    for exchange in exchanges(10, T0 + 1_000_000_000) {
        more.append(exchange).unwrap();
    }
    more.close().unwrap();
    let again = SourceOptions {
        ends: Some(ends),
        ..SourceOptions::default()
    };
    let (read, _) = read_all(KafkaSource::open(&address, &KafkaOptions::new(), again).unwrap());
    assert_eq!(read.len(), 200);
    let (read, _) = read_all(
        KafkaSource::open(&address, &KafkaOptions::new(), SourceOptions::default()).unwrap(),
    );
    assert_eq!(read.len(), 210);
}

#[test]
fn from_a_time_and_since_skip_what_was_recorded_before() {
    let cluster = cluster("timed", 3);
    let address = address(&cluster, "timed");
    let mut sink =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    for exchange in exchanges(100, T0) {
        sink.append(exchange).unwrap();
    }
    sink.close().unwrap();
    let at_50 = T0 + 50 * 1_000_000;
    let time = reprise_model::time::format_ns(at_50);
    let later = KafkaAddress::parse(&format!("{address}?from={time}")).unwrap();
    let (read, _) = read_all(
        KafkaSource::open(&later, &KafkaOptions::new(), SourceOptions::default()).unwrap(),
    );
    assert_eq!(read.len(), 50);
    assert!(read.iter().all(|e| e.recorded_at_ns >= at_50));
    let since = SourceOptions {
        since_ns: Some(T0 + 90 * 1_000_000),
        ..SourceOptions::default()
    };
    let (read, _) = read_all(KafkaSource::open(&address, &KafkaOptions::new(), since).unwrap());
    assert_eq!(read.len(), 10);
    let end = KafkaAddress::parse(&format!("{address}?from=end")).unwrap();
    let (read, _) =
        read_all(KafkaSource::open(&end, &KafkaOptions::new(), SourceOptions::default()).unwrap());
    assert!(read.is_empty());
}

#[test]
fn following_reads_what_comes_until_stopped() {
    let cluster = cluster("live", 2);
    let address = address(&cluster, "live");
    let stop = Arc::new(AtomicBool::new(false));
    let options = SourceOptions {
        follow: Some(Arc::clone(&stop)),
        ..SourceOptions::default()
    };
    let mut source = KafkaSource::open(&address, &KafkaOptions::new(), options).unwrap();
    let mut sink =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    let written = exchanges(20, T0);
    for exchange in &written[..10] {
        sink.append(exchange.clone()).unwrap();
    }
    sink.sync().unwrap();
    for _ in 0..10 {
        source.next().unwrap().unwrap();
    }
    for exchange in &written[10..] {
        sink.append(exchange.clone()).unwrap();
    }
    sink.close().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (rest, _) = read_all(source);
    assert_eq!(rest.len(), 10);
}

#[test]
fn a_message_that_is_not_a_record_is_skipped_and_named() {
    let cluster = cluster("mixed", 1);
    let address = address(&cluster, "mixed");
    let mut sink =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    sink.append(exchanges(1, T0).remove(0)).unwrap();
    sink.close().unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    producer
        .send(BaseRecord::to("mixed").payload("hello").key("k"))
        .map_err(|(e, _)| e)
        .unwrap();
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: reprise_kafka::SCHEMA_HEADER,
        value: Some("3"),
    });
    producer
        .send(
            BaseRecord::to("mixed")
                .payload(&[0xff_u8, 0xff, 0xff][..])
                .key("k")
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut sink =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    sink.append(exchanges(2, T0).remove(1)).unwrap();
    sink.close().unwrap();

    let (read, damage) = read_all(
        KafkaSource::open(&address, &KafkaOptions::new(), SourceOptions::default()).unwrap(),
    );
    assert_eq!(read.len(), 2);
    let damage: Vec<String> = damage.iter().map(ToString::to_string).collect();
    assert_eq!(damage.len(), 2, "{damage:?}");
    assert!(
        damage[0].ends_with(
            "/mixed: partition 0 offset 1: not a reprise record, skipped: no reprise-schema header"
        ),
        "{damage:?}"
    );
    assert!(damage[1].contains("partition 0 offset 2: not a reprise record, skipped: not a valid reprise.v1.Exchange record"), "{damage:?}");
}

#[test]
fn an_unreachable_broker_and_a_missing_topic_are_clear_errors_in_bounded_time() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = KafkaAddress::parse(&format!("kafka://127.0.0.1:{port}/t")).unwrap();
    let options = SinkOptions {
        connect_timeout: Duration::from_secs(2),
        ..SinkOptions::default()
    };
    let started = Instant::now();
    let error = KafkaSink::open(&nowhere, &KafkaOptions::new(), &options).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, KafkaError::Unreachable { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "kafka://127.0.0.1:{port}/t: no broker answered within 2s"
        )),
        "{message}"
    );
    let reading = SourceOptions {
        connect_timeout: Duration::from_secs(2),
        ..SourceOptions::default()
    };
    let error = KafkaSource::open(&nowhere, &KafkaOptions::new(), reading).unwrap_err();
    assert!(matches!(error, KafkaError::Unreachable { .. }), "{error}");

    let cluster = cluster("present", 1);
    let missing = address(&cluster, "absent");
    for error in [
        KafkaSink::open(&missing, &KafkaOptions::new(), &SinkOptions::default()).unwrap_err(),
        KafkaSource::open(&missing, &KafkaOptions::new(), SourceOptions::default()).unwrap_err(),
    ] {
        assert!(
            error.to_string().ends_with("/absent: topic \"absent\" does not exist on the cluster (create it first, e.g. `kafka-topics.sh --create --topic absent --partitions N`)"),
            "{error}"
        );
    }
    // A setting librdkafka does not know is refused up front.
    let mut bad = KafkaOptions::new();
    bad.add("no.such.setting=1").unwrap();
    let error =
        KafkaSink::open(&address(&cluster, "present"), &bad, &SinkOptions::default()).unwrap_err();
    assert!(matches!(error, KafkaError::Settings { .. }), "{error}");
    assert!(error.to_string().contains("no.such.setting"), "{error}");
    // SASL the cluster does not speak: the failure is named, in bound.
    let mut sasl = KafkaOptions::new();
    for setting in [
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=PLAIN",
        "sasl.username=reprise",
        "sasl.password=not-shown",
    ] {
        sasl.add(setting).unwrap();
    }
    let present = address(&cluster, "present");
    for error in [
        KafkaSink::open(&present, &sasl, &options).unwrap_err(),
        KafkaSource::open(
            &present,
            &sasl,
            SourceOptions {
                connect_timeout: Duration::from_secs(2),
                ..SourceOptions::default()
            },
        )
        .unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(
            message.contains("no broker answered within 2s ("),
            "{message}"
        );
        assert!(message.contains("SASL"), "{message}");
        assert!(!message.contains("not-shown"), "{message}");
    }
    // group= is not for a reader of the whole topic.
    let grouped = address(&cluster, "present?group=g");
    let error =
        KafkaSource::open(&grouped, &KafkaOptions::new(), SourceOptions::default()).unwrap_err();
    assert!(error.to_string().contains("group="), "{error}");
}

#[test]
fn a_broker_that_goes_away_costs_exchanges_not_waiting_and_recording_resumes() {
    let cluster = cluster("flaky", 1);
    let address = address(&cluster, "flaky");
    let mut settings = KafkaOptions::new();
    // A small queue, so that the outage fills it quickly.
    settings.add("queue.buffering.max.messages=20").unwrap();
    let mut sink = KafkaSink::open(&address, &settings, &SinkOptions::default()).unwrap();
    let all = exchanges(120, T0);
    let mut accepted = 20;
    for exchange in &all[..20] {
        sink.append(exchange.clone()).unwrap();
    }
    sink.sync().unwrap();
    cluster.broker_down(1).unwrap();
    let started = Instant::now();
    let mut refused = 0;
    for exchange in &all[20..100] {
        match sink.append(exchange.clone()) {
            Ok(()) => accepted += 1,
            Err(error) => {
                assert!(error.is_unwritten(), "{error}");
                assert!(error.to_string().contains("queue is full"), "{error}");
                refused += 1;
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "appending waited"
    );
    assert!(refused >= 60, "{refused}");
    cluster.broker_up(1).unwrap();
    // Room comes back once the queue drains: sync waits for the broker
    // to take what is queued (each try bounded by the sink's close
    // timeout, while the client reconnects).
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.sync().is_err() {
        assert!(Instant::now() < deadline, "the queue never drained");
    }
    for exchange in &all[100..] {
        sink.append(exchange.clone()).unwrap();
        accepted += 1;
    }
    sink.close().unwrap();
    let tally = sink.tally().unwrap();
    assert_eq!(tally.written + tally.unwritten, accepted, "{tally:?}");
    assert!(tally.refused >= refused, "{tally:?}");
    let (read, _) = read_all(
        KafkaSource::open(&address, &KafkaOptions::new(), SourceOptions::default()).unwrap(),
    );
    assert_eq!(read.len() as u64, tally.written);
    assert!(
        read.iter().any(|e| e.id == all[119].id),
        "recording resumed"
    );
}

fn group_settings() -> KafkaOptions {
    let mut settings = KafkaOptions::new();
    // Rebalances in seconds, not the default 45.
    settings.add("session.timeout.ms=6000").unwrap();
    settings.add("heartbeat.interval.ms=500").unwrap();
    settings
}

/// One member's run: reads its share, settling each exchange at once
/// (or none, with `settle` false, for `stop_after` exchanges, then
/// dies); gives the ids it read.
fn member(
    address: KafkaAddress,
    settle: bool,
    stop_after: Option<usize>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let (source, acks) =
            GroupSource::join(&address, &group_settings(), SourceOptions::default()).unwrap();
        let mut read = Vec::new();
        for item in source {
            let exchange = item.unwrap();
            if settle {
                acks.settled(&exchange.id);
            }
            read.push(exchange.id);
            if stop_after.is_some_and(|n| read.len() >= n) {
                // Dies: nothing more settled, nothing committed.
                return read;
            }
        }
        acks.finish().unwrap();
        read
    })
}

#[test]
fn a_group_shares_a_topic_each_exchange_read_once_and_a_dead_member_is_taken_over() {
    let cluster = cluster("shared", 4);
    let address = address(&cluster, "shared");
    let mut sink =
        KafkaSink::open(&address, &KafkaOptions::new(), &SinkOptions::default()).unwrap();
    let written = exchanges(400, T0);
    for exchange in &written {
        sink.append(exchange.clone()).unwrap();
    }
    sink.close().unwrap();
    let all: HashSet<Vec<u8>> = written.iter().map(|e| e.id.clone()).collect();

    // Two members, settling as they go: together each exchange once.
    let grouped = KafkaAddress::parse(&format!("{address}?group=two")).unwrap();
    let a = member(grouped.clone(), true, None);
    let b = member(grouped.clone(), true, None);
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(a.len() + b.len(), 400, "{} + {}", a.len(), b.len());
    let union: HashSet<Vec<u8>> = a.iter().chain(&b).cloned().collect();
    assert_eq!(union, all);
    // Done: the group starts again where it committed, with nothing left.
    let again = member(grouped, true, None).join().unwrap();
    assert!(again.is_empty(), "{}", again.len());

    // A member that dies having settled nothing: the survivor reads
    // everything it had, and the group still ends.
    let grouped = KafkaAddress::parse(&format!("{address}?group=dying")).unwrap();
    let dead = member(grouped.clone(), false, Some(50)).join().unwrap();
    assert_eq!(dead.len(), 50);
    let survivor = member(grouped, true, None).join().unwrap();
    let survived: HashSet<Vec<u8>> = survivor.iter().cloned().collect();
    assert_eq!(survived, all, "the survivor read {} of 400", survived.len());
}
