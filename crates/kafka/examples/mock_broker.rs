//! A Kafka broker in a process of its own, for benchmarks and scripts:
//! librdkafka's mock cluster (a real Kafka listener on 127.0.0.1).
//!
//! `mock_broker [--brokers N] TOPIC:PARTITIONS...` prints the bootstrap
//! servers on stdout, one line, then serves until its stdin closes (or
//! it is killed).

use std::io::Read;

use rdkafka::mocking::MockCluster;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut brokers = 1;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--brokers" {
            brokers = args.next().ok_or("--brokers needs a number")?.parse()?;
            continue;
        }
        let (name, partitions) = arg
            .split_once(':')
            .ok_or_else(|| format!("{arg:?}: expected TOPIC:PARTITIONS"))?;
        topics.push((name.to_string(), partitions.parse::<i32>()?));
    }
    let cluster = MockCluster::new(brokers)?;
    for (name, partitions) in &topics {
        cluster.create_topic(name, *partitions, 1)?;
    }
    println!("{}", cluster.bootstrap_servers());
    // Served until whoever started it closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
