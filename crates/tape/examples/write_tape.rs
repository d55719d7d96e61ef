//! Writes a tape of synthetic, realistic exchanges, for benchmarks of the
//! commands that read tapes (`bench/ls-big.sh`).
//!
//! Usage: `cargo run --release -p reprise-tape --example write_tape -- OUT.tape SIZE_MIB`

use reprise_tape::{TapeWriter, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(out), Some(size)) = (args.next(), args.next()) else {
        return Err("usage: write_tape OUT.tape SIZE_MIB (uncompressed)".into());
    };
    let target = size.parse::<u64>()? << 20;
    let mut writer = TapeWriter::create(&out, WriterOptions::default())?;
    let mut written = 0u64;
    let mut i = 0usize;
    while written < target {
        let exchange = reprise_model::synthetic::realistic(i);
        written += reprise_model::encoded_len(&exchange) as u64;
        writer.write(&exchange)?;
        i += 1;
    }
    let stats = writer.finish()?;
    println!(
        "{out}: {i} exchanges, {} MiB raw, {} MiB on disk",
        stats.raw_bytes >> 20,
        stats.file_bytes >> 20
    );
    Ok(())
}
