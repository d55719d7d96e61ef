//! The layers' recording on a disk that fills up and frees again: the
//! same recorder and tape writer as `reprise record`, so the same
//! behaviour. The test runs itself again in a mount namespace of its own
//! (`unshare -m`) on a 1 MiB tmpfs, which goes with the namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use reprise_model::Sink;
use reprise_tape::{TapeWriter, WriterOptions};
use reprise_testkit::full_disk::{DISK, fill, rerun_on_a_small_disk};
use reprise_tower::{Mode, Reprise};
use support::*;

/// This test, run again inside the namespace.
const NAME: &str = "a_full_disk_degrades_the_layers_recording_which_resumes";

#[test]
fn a_full_disk_degrades_the_layers_recording_which_resumes() {
    if let Ok(disk) = std::env::var(DISK) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        return runtime.block_on(on_a_disk_that_fills(Path::new(&disk)));
    }
    rerun_on_a_small_disk(NAME);
}

/// Two checkouts of 8 KiB each (an inbound call and its downstream call
/// each): every block needs pages a full disk does not have.
async fn checkouts(shop: std::net::SocketAddr, from: usize) {
    for i in from..from + 2 {
        let order = format!("{{\"order\":{i},\"pad\":\"{}\"}}", "x".repeat(8192));
        let request = http::Request::post(format!("http://{shop}/checkout"))
            .header("content-type", "application/json")
            .body(body(order))
            .unwrap();
        let (status, _, _) = send(request).await;
        assert_eq!(status, 200);
    }
}

async fn on_a_disk_that_fills(disk: &Path) {
    let (inventory, _inventory_task) = inventory().await;
    let tape = disk.join("shop.tape");
    // Uncompressed, so that each block takes pages of its own.
    let options = WriterOptions {
        inline: true,
        zstd_level: None,
        ..WriterOptions::default()
    };
    let (writer, _) = TapeWriter::open(&tape, options).unwrap();
    let sink: Box<dyn Sink> = Box::new(writer);
    let reprise = Reprise::record_to(config(Mode::Record, &tape), sink).unwrap();
    let (shop, _shop_task) = serve(support::shop(&reprise, &inventory.to_string())).await;
    let metrics = reprise.metrics().clone();

    checkouts(shop, 0).await;
    eventually("4 recorded", || metrics.snapshot().recorded == 4).await;

    fill(disk);
    checkouts(shop, 2).await;
    eventually("4 dropped", || metrics.snapshot().dropped_write_failed == 4).await;
    let reason = metrics.degraded().unwrap();
    assert!(reason.contains("No space left on device"), "{reason}");
    assert_eq!(metrics.snapshot().recorded, 4);
    // The tape ends at its last sealed block (read_tape fails on damage).
    assert_eq!(read_tape(&tape).len(), 4);

    std::fs::remove_file(disk.join("filler")).unwrap();
    checkouts(shop, 4).await;
    eventually("8 recorded", || metrics.snapshot().recorded == 8).await;
    assert_eq!(metrics.degraded(), None);

    let stats = shut(reprise).await;
    assert_eq!(
        (stats.recorded, stats.dropped_write_failed, stats.dropped()),
        (8, 4, 4)
    );
    assert_eq!(
        stats.seen,
        stats.recorded + stats.sampled_out + stats.unmatched + stats.dropped()
    );
    let orders: Vec<String> = read_tape(&tape)
        .iter()
        .filter(|e| e.request.as_ref().unwrap().path == "/checkout")
        .map(|e| String::from_utf8_lossy(&e.request.as_ref().unwrap().body)[..11].to_string())
        .collect();
    assert_eq!(orders, [0, 1, 4, 5].map(|i| format!("{{\"order\":{i},")));
}
