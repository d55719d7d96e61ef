//! Any bytes to the importers (as a HAR file when they look like one):
//! a clear error or skipped entries, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sink = reprise_model::MemorySink::new();
    let mut input = Vec::with_capacity(data.len() + 16);
    input.extend_from_slice(PREFIX);
    input.extend_from_slice(data);
    let _ = reprise_interop::import_bytes(&input, "fuzz", &mut sink);
});

const PREFIX: &[u8] = b"{\"log\":{\"entries\":[";
