//! Any bytes as a tape file: the reader reports or skips, never panics.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Half the inputs get a valid file header so the block walk is reached.
    let mut file = match tempfile_in_shm() {
        Some(file) => file,
        None => return,
    };
    if data.first().is_some_and(|b| b & 1 == 0) {
        let header = reprise_tape::format::FileHeader { format_version: 1, schema_version: 1, created_at_ns: 0 };
        let _ = file.1.write_all(&header.encode());
    }
    let _ = file.1.write_all(data);
    let _ = file.1.flush();
    if let Ok(reader) = reprise_tape::TapeReader::open(&file.0) {
        for item in reader {
            let _ = item;
        }
    }
    let _ = reprise_tape::block_index(&file.0);
    let _ = std::fs::remove_file(&file.0);
});

fn tempfile_in_shm() -> Option<(std::path::PathBuf, std::fs::File)> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let path = dir.join(format!("reprise-fuzz-{}.tape", std::process::id()));
    std::fs::File::create(&path).ok().map(|f| (path, f))
}
