//! `reprise ls` on crafted tapes of a few KiB whose one block holds one
//! huge record of zeros: what the process costs is measured from outside
//! (its peak resident size, `/usr/bin/time -f %M`), zstd's own
//! allocations included.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::Write;
use std::path::Path;
use std::process::Command;

use reprise_tape::format::{BlockHeader, Codec, FORMAT_VERSION, FileHeader, MAX_BLOCK_PAYLOAD};

const MIB: u64 = 1 << 20;

/// A zstd frame holding one record of `len` zero bytes (its length prefix,
/// then the zeros), with a window of 2^`window_log` bytes and no content
/// size: a few KiB on disk.
fn one_record_of_zeros(len: usize, window_log: u32) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.window_log(window_log).unwrap();
    encoder.include_contentsize(false).unwrap();
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(len as u64, &mut prefix);
    encoder.write_all(&prefix).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    encoder.finish().unwrap()
}

/// A tape of one zstd block declaring the largest raw length and holding
/// `frame`, with a valid checksum: only its contents lie.
fn crafted_tape(path: &Path, frame: &[u8]) {
    let mut file = FileHeader {
        format_version: FORMAT_VERSION,
        schema_version: 1,
        created_at_ns: 0,
    }
    .encode()
    .to_vec();
    let header = BlockHeader {
        codec: Codec::Zstd,
        seq: 0,
        offset: file.len() as u64,
        payload_len: frame.len() as u32,
        raw_len: MAX_BLOCK_PAYLOAD,
        count: 1,
        payload_crc: crc32c::crc32c(frame),
        schema_rev: 1,
        carries_unknown: false,
        min_ts: 0,
        max_ts: 0,
    };
    file.extend_from_slice(&header.encode());
    file.extend_from_slice(frame);
    std::fs::write(path, file).unwrap();
}

/// `reprise ls TAPE` under `/usr/bin/time`: its stderr, and its peak
/// resident size in bytes.
fn ls_peak(tape: &Path) -> (String, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak %M"])
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .arg("ls")
        .arg(tape)
        .output()
        .expect("GNU time at /usr/bin/time (scripts/setup-tests.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let kib: u64 = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stderr:?}"));
    (stderr, kib * 1024)
}

#[test]
fn a_crafted_huge_record_costs_at_most_its_size_and_a_bounded_window() {
    let dir = tempfile::tempdir().unwrap();

    // A frame asking for a 256 MiB window (more than any level writes):
    // refused before zstd allocates it.
    let wide = dir.path().join("wide.tape");
    let frame = one_record_of_zeros(200 << 20, 28);
    assert!(frame.len() < 64 << 10, "{}", frame.len());
    crafted_tape(&wide, &frame);
    let (stderr, peak) = ls_peak(&wide);
    assert!(stderr.contains("does not decode: zstd: "), "{stderr}");
    assert!(
        peak < 64 * MIB,
        "refusing a wide window took {} MiB: {stderr}",
        peak / MIB
    );

    // A frame with a small window and one record as large as a block may
    // hold: the record is held while it is decoded (the format's bound),
    // nothing more.
    let huge = dir.path().join("huge.tape");
    let len = (MAX_BLOCK_PAYLOAD - 16) as usize;
    crafted_tape(&huge, &one_record_of_zeros(len, 20));
    let (stderr, peak) = ls_peak(&huge);
    assert!(stderr.contains("does not decode"), "{stderr}");
    assert!(
        peak < len as u64 + 64 * MIB,
        "a {} MiB record took {} MiB: {stderr}",
        len as u64 / MIB,
        peak / MIB
    );
}
