#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a message
//! Whatever is written is read back identical, across block boundaries and
//! after `sync()`.

mod common;

use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;
use reprise_model::Sink;
use reprise_tape::{TapeReader, TapeWriter, WriterOptions, block_index};

fn small_blocks() -> WriterOptions {
    WriterOptions {
        block_bytes: 2048,
        ..WriterOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn written_then_read_is_identical(
        exchanges in proptest::collection::vec(common::arb_exchange(), 0..60),
        sync_every in 1usize..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tape");
        let mut writer = TapeWriter::create(&path, small_blocks()).unwrap();
        for (i, exchange) in exchanges.iter().enumerate() {
            writer.write(exchange).unwrap();
            if i % sync_every == 0 {
                writer.sync().unwrap();
                // After sync everything so far is on disk and readable.
                let (read, damage) = common::read_all(&path);
                prop_assert!(damage.is_empty());
                prop_assert_eq!(&read[..], &exchanges[..=i]);
            }
        }
        writer.finish().unwrap();
        let (read, damage) = common::read_all(&path);
        prop_assert!(damage.is_empty());
        prop_assert_eq!(read, exchanges);
    }
}

#[test]
fn blocks_seal_on_size_and_carry_their_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, small_blocks()).unwrap();
    for i in 0..100 {
        writer.write(&common::exchange(i, 300)).unwrap();
    }
    let stats = writer.finish().unwrap();
    assert_eq!(stats.records, 100);
    let (blocks, damage) = block_index(&path).unwrap();
    assert!(damage.is_empty());
    assert_eq!(blocks.len() as u64, stats.blocks);
    assert!(blocks.len() > 10, "2 KiB blocks: {} blocks", blocks.len());
    assert_eq!(blocks.iter().map(|b| u64::from(b.count)).sum::<u64>(), 100);
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(block.seq, i as u64);
        assert!(block.min_ts <= block.max_ts);
    }
    assert!(blocks.windows(2).all(|w| w[0].max_ts < w[1].min_ts));
}

#[test]
fn blocks_seal_on_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let options = WriterOptions {
        block_age: std::time::Duration::from_millis(20),
        ..WriterOptions::default()
    };
    let mut writer = TapeWriter::create(&path, options).unwrap();
    writer.write(&common::exchange(1, 10)).unwrap();
    // No sync: the age bound alone must seal and write the block.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (read, _) = common::read_all(&path);
        if read.len() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "block never sealed by age"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    writer.finish().unwrap();
}

#[test]
fn new_tapes_are_private_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, WriterOptions::default()).unwrap();
    writer.finish().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = TapeWriter::create(&path, WriterOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "tape {}: already exists (append to it, or choose another path)",
            path.display()
        )
    );
}

#[test]
fn append_continues_the_tape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, small_blocks()).unwrap();
    for i in 0..30 {
        writer.write(&common::exchange(i, 200)).unwrap();
    }
    writer.finish().unwrap();
    let (mut writer, report) = TapeWriter::open(&path, small_blocks()).unwrap();
    assert!(report.cut.is_none());
    assert!(report.blocks > 0);
    for i in 30..60 {
        Sink::append(&mut writer, common::exchange(i, 200)).unwrap();
    }
    Sink::close(&mut writer).unwrap();
    let (read, damage) = common::read_all(&path);
    assert!(damage.is_empty());
    assert_eq!(
        read,
        (0..60)
            .map(|i| common::exchange(i, 200))
            .collect::<Vec<_>>()
    );
    let (blocks, _) = block_index(&path).unwrap();
    assert!(
        blocks.iter().enumerate().all(|(i, b)| b.seq == i as u64),
        "indexes continue"
    );
}

#[test]
fn reader_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, WriterOptions::default()).unwrap();
    for i in 0..5 {
        writer.write(&common::exchange(i, 10)).unwrap();
    }
    writer.finish().unwrap();
    let source: Box<dyn reprise_model::Source> = Box::new(TapeReader::open(&path).unwrap());
    assert_eq!(source.filter_map(Result::ok).count(), 5);
}

/// A record as a newer reprise would write it: a known exchange plus a
/// field this build does not know (number 99, a string).
fn newer_record() -> Vec<u8> {
    let mut bytes = reprise_model::codec::encode_to_vec(&common::exchange(7, 20));
    prost::encoding::encode_key(99, prost::encoding::WireType::LengthDelimited, &mut bytes);
    prost::encoding::encode_varint(6, &mut bytes);
    bytes.extend_from_slice(b"future");
    bytes
}

#[test]
fn unknown_fields_survive_a_tape_round_trip() {
    let newer = reprise_model::decode(&newer_record()).unwrap();
    assert!(newer.unknown_fields.is_some());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, WriterOptions::default()).unwrap();
    writer.write(&newer).unwrap();
    writer.write(&common::exchange(8, 20)).unwrap();
    writer.finish().unwrap();
    let (blocks, _) = block_index(&path).unwrap();
    assert!(
        blocks[0].carries_unknown,
        "the block says it carries unknown fields"
    );
    let (read, _) = common::read_all(&path);
    assert_eq!(read[0], newer);
    assert_eq!(
        reprise_model::codec::encode_to_vec(&read[0]),
        newer_record()
    );
}

#[test]
fn blocks_of_a_newer_revision_are_checked_for_unknown_fields() {
    use reprise_tape::format::{BlockHeader, Codec, FILE_HEADER_LEN, FileHeader};
    let record = newer_record();
    let mut raw = Vec::new();
    prost::encoding::encode_varint(record.len() as u64, &mut raw);
    raw.extend_from_slice(&record);
    let header = BlockHeader {
        codec: Codec::None,
        seq: 0,
        offset: FILE_HEADER_LEN as u64,
        payload_len: raw.len() as u32,
        raw_len: raw.len() as u32,
        count: 1,
        payload_crc: crc32c::crc32c(&raw),
        schema_rev: reprise_model::SCHEMA_REVISION + 1,
        carries_unknown: false,
        min_ts: 0,
        max_ts: 0,
    };
    let mut file = FileHeader {
        format_version: 1,
        schema_version: 1,
        created_at_ns: 0,
    }
    .encode()
    .to_vec();
    file.extend_from_slice(&header.encode());
    file.extend_from_slice(&raw);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.tape");
    std::fs::write(&path, &file).unwrap();
    let (read, damage) = common::read_all(&path);
    assert!(damage.is_empty());
    assert_eq!(reprise_model::codec::encode_to_vec(&read[0]), record);
}

/// Writes `exchanges` through the sink, alternately as exchanges and as
/// their bytes.
fn write_alternately(writer: &mut TapeWriter, exchanges: &[reprise_model::Exchange]) {
    for (i, exchange) in exchanges.iter().enumerate() {
        if i % 2 == 0 {
            let bytes = reprise_model::codec::encode_to_vec(exchange);
            writer
                .append_encoded(&bytes, exchange.recorded_at_ns)
                .unwrap();
        } else {
            writer.append(exchange.clone()).unwrap();
        }
    }
}

#[test]
fn records_given_encoded_read_back_as_their_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, small_blocks()).unwrap();
    let exchanges: Vec<_> = (0..40).map(|i| common::exchange(i, 200)).collect();
    write_alternately(&mut writer, &exchanges);
    writer.finish().unwrap();
    let (read, damage) = common::read_all(&path);
    assert!(damage.is_empty());
    assert_eq!(read, exchanges);
    // The blocks' time ranges come from the times given with the bytes.
    let (blocks, _) = block_index(&path).unwrap();
    assert_eq!(blocks[0].min_ts, exchanges[0].recorded_at_ns);
    assert!(blocks.windows(2).all(|w| w[0].max_ts < w[1].min_ts));
}

#[test]
fn a_record_larger_than_a_block_is_refused_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(&path, WriterOptions::default()).unwrap();
    let huge = vec![0u8; reprise_tape::format::MAX_BLOCK_PAYLOAD as usize];
    let error = writer.write_encoded(&huge, 1).unwrap_err().to_string();
    assert!(
        error.contains("larger than the") && error.contains(&huge.len().to_string()),
        "{error}"
    );
    // The tape goes on.
    writer.write(&common::exchange(1, 10)).unwrap();
    writer.finish().unwrap();
    assert_eq!(common::read_all(&path).0.len(), 1);
}

#[test]
fn an_inline_writer_writes_the_same_tape_on_the_callers_thread() {
    // How long a record waits in the open block before a tick seals it.
    fn options_age() -> std::time::Duration {
        std::time::Duration::from_millis(200)
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let options = WriterOptions {
        inline: true,
        block_age: options_age(),
        ..small_blocks()
    };
    let mut writer = TapeWriter::create(&path, options).unwrap();
    let exchanges: Vec<_> = (0..40).map(|i| common::exchange(i, 200)).collect();
    write_alternately(&mut writer, &exchanges);
    // 2 KiB blocks: sealed by size as the records come, on this thread.
    let (blocks, _) = block_index(&path).unwrap();
    assert!(blocks.len() > 3, "{} blocks", blocks.len());
    writer.sync().unwrap();
    assert_eq!(common::read_all(&path).0, exchanges);

    // A record waits in the open block until it is old enough and the
    // writer is ticked.
    let sealed = block_index(&path).unwrap().0.len();
    let written_at = std::time::Instant::now();
    writer.write(&common::exchange(99, 10)).unwrap();
    writer.tick().unwrap();
    let blocks = block_index(&path).unwrap().0.len();
    let read = common::read_all(&path).0.len();
    // Only when this thread was not held up past the block's age.
    if written_at.elapsed() < options_age() {
        assert_eq!((blocks, read), (sealed, 40), "not sealed yet");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while block_index(&path).unwrap().0.len() == sealed {
        assert!(std::time::Instant::now() < deadline, "never sealed by age");
        std::thread::sleep(std::time::Duration::from_millis(5));
        writer.tick().unwrap();
    }
    assert_eq!(block_index(&path).unwrap().0.len(), sealed + 1);
    assert_eq!(common::read_all(&path).0.len(), 41);

    let stats = writer.finish().unwrap();
    assert_eq!(stats.records, 41);
    let error = writer.write(&common::exchange(100, 10)).unwrap_err();
    assert!(error.to_string().contains("closed"), "{error}");
}

/// Packs `exchanges` with `packer` (as a serving thread does), the last
/// pack flushed.
fn pack_all(
    mut packer: Box<dyn reprise_model::pack::Packer>,
    exchanges: &[reprise_model::Exchange],
) -> Vec<reprise_model::pack::Packed> {
    let mut packs = Vec::new();
    for exchange in exchanges {
        let mut record = Vec::new();
        reprise_model::encode(exchange, &mut record);
        packs.extend(packer.add(&record, exchange.recorded_at_ns).unwrap());
    }
    packs.extend(packer.flush());
    packs
}

/// A new tape in `dir` with 2 KiB blocks, written inline or on the
/// writer's thread, compressed at `zstd_level`.
fn small_tape(
    dir: &tempfile::TempDir,
    inline: bool,
    zstd_level: Option<i32>,
) -> (std::path::PathBuf, TapeWriter) {
    let path = dir.path().join("t.tape");
    let options = WriterOptions {
        inline,
        zstd_level,
        ..small_blocks()
    };
    let writer = TapeWriter::create(&path, options).unwrap();
    (path, writer)
}

#[test]
fn blocks_packed_on_other_threads_are_written_whole_after_the_open_block() {
    for inline in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = small_tape(&dir, inline, WriterOptions::default().zstd_level);
        let first: Vec<_> = (0..20).map(|i| common::exchange(i, 300)).collect();
        let second: Vec<_> = (20..40).map(|i| common::exchange(i, 300)).collect();
        let (a, b) = (writer.packer(), writer.packer().another());
        let (first_packs, second_packs) = std::thread::scope(|s| {
            let a = s.spawn(|| pack_all(a, &first));
            let b = s.spawn(|| pack_all(b, &second));
            (a.join().unwrap(), b.join().unwrap())
        });
        // Each pack is one block of at most 2 KiB of records (and one more).
        assert!(first_packs.len() > 3, "{} packs", first_packs.len());
        for pack in first_packs.iter().chain(&second_packs) {
            assert!(pack.raw_len <= 2048 + 400, "{}", pack.raw_len);
            assert_eq!(pack.codec, reprise_model::pack::PackedCodec::Zstd);
        }
        // A record written the usual way waits in the open block; a pack
        // goes after it.
        let lone = common::exchange(100, 10);
        writer.write(&lone).unwrap();
        let first_counts: Vec<u32> = first_packs.iter().map(|p| p.count).collect();
        for pack in first_packs.into_iter().chain(second_packs) {
            writer.write_packed(pack).unwrap();
        }
        // A plain pack (any store's) is a block stored as it is.
        let plain = pack_all(
            Box::new(reprise_model::pack::PlainPacker::default()),
            &[common::exchange(200, 10)],
        );
        writer
            .append_packed(plain.into_iter().next().unwrap())
            .unwrap();
        let stats = writer.finish().unwrap();
        assert_eq!(stats.records, 42);

        let mut expected = vec![lone.clone()];
        expected.extend(first.iter().cloned());
        expected.extend(second.iter().cloned());
        expected.push(common::exchange(200, 10));
        let (read, damage) = common::read_all(&path);
        assert!(damage.is_empty(), "{damage:?}");
        assert_eq!(read, expected, "inline: {inline}");
        let (blocks, _) = block_index(&path).unwrap();
        assert_eq!(blocks[0].count, 1, "the open block, sealed first");
        let counts: Vec<u32> = blocks[1..=first_counts.len()]
            .iter()
            .map(|b| b.count)
            .collect();
        assert_eq!(counts, first_counts);
        let last = blocks.last().unwrap();
        assert_eq!((last.count, last.codec as u8), (1, 0));
        let pack = &blocks[1];
        assert_eq!(
            (pack.min_ts, pack.max_ts),
            (
                first[0].recorded_at_ns,
                first[pack.count as usize - 1].recorded_at_ns
            )
        );

        let late = pack_all(writer.packer(), &[common::exchange(300, 10)]);
        let error = writer
            .write_packed(late.into_iter().next().unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("closed"), "{error}");
    }
}

#[test]
fn a_packer_hands_its_block_over_at_the_blocks_age() {
    let options = WriterOptions {
        block_age: std::time::Duration::from_millis(30),
        ..WriterOptions::default()
    };
    let mut packer = reprise_tape::TapePacker::new(&options);
    use reprise_model::pack::Packer;
    let mut record = Vec::new();
    reprise_model::encode(&common::exchange(1, 10), &mut record);
    assert!(packer.add(&record, 5).unwrap().is_none());
    let now = std::time::Instant::now();
    assert!(!packer.due(now));
    assert!(packer.due(now + std::time::Duration::from_millis(30)));
    let pack = packer.flush().unwrap();
    assert_eq!((pack.count, pack.min_ts, pack.max_ts), (1, 5, 5));
    assert!(!packer.due(now + std::time::Duration::from_secs(1)));
    assert!(packer.flush().is_none());
}

#[test]
fn a_pack_over_a_blocks_limit_is_refused_and_the_tape_goes_on() {
    for inline in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = small_tape(&dir, inline, WriterOptions::default().zstd_level);
        let huge = reprise_model::pack::Packed {
            codec: reprise_model::pack::PackedCodec::Plain,
            bytes: Vec::new(),
            raw_len: 300 << 20,
            count: 1,
            min_ts: 0,
            max_ts: 0,
        };
        let error = writer.write_packed(huge).unwrap_err().to_string();
        assert!(
            error.contains(
                "a pack of 314572800 bytes is larger than the 268435456-byte block limit"
            ),
            "{error}"
        );
        writer.write(&common::exchange(1, 10)).unwrap();
        writer.finish().unwrap();
        assert_eq!(common::read_all(&path).0, [common::exchange(1, 10)]);
    }
}

#[test]
fn without_compression_blocks_are_stored_as_they_are() {
    for inline in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = small_tape(&dir, inline, None);
        let exchanges: Vec<_> = (0..40).map(|i| common::exchange(i, 300)).collect();
        for exchange in &exchanges[..20] {
            writer.write(exchange).unwrap();
        }
        // Packed on another thread too: plain packs.
        let packs = pack_all(writer.packer(), &exchanges[20..]);
        for pack in packs {
            assert_eq!(pack.codec, reprise_model::pack::PackedCodec::Plain);
            writer.write_packed(pack).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(common::read_all(&path).0, exchanges, "inline: {inline}");
        let (blocks, _) = block_index(&path).unwrap();
        assert!(blocks.len() > 4, "{} blocks", blocks.len());
        assert!(
            blocks
                .iter()
                .all(|b| b.codec as u8 == 0 && b.payload_len == b.raw_len),
            "{blocks:?}"
        );
    }
}

#[test]
fn a_record_too_large_for_a_block_is_refused_by_the_packer_which_goes_on() {
    use reprise_model::pack::Packer;
    let mut packer = reprise_tape::TapePacker::new(&WriterOptions::default());
    // Zeroed pages, never touched: the size is refused before any copy.
    let huge = vec![0u8; 256 << 20];
    let error = packer.add(&huge, 1).unwrap_err().to_string();
    assert!(error.contains("is over the limit"), "{error}");
    let mut record = Vec::new();
    reprise_model::encode(&common::exchange(1, 10), &mut record);
    assert!(packer.add(&record, 2).unwrap().is_none());
    assert_eq!(packer.flush().map(|p| p.count), Some(1));
}
