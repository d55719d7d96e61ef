//! Numbers for people: durations, sizes, hex dumps.

pub use reprise_model::time::human_duration;

/// `512B`, `4.5KiB`, `12MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// Classic hex dump: offset, 16 bytes in hex, the printable ones as text.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "-");
        assert_eq!(human_duration(850_000), "850µs");
        assert_eq!(human_duration(12_345_678), "12.3ms");
        assert_eq!(human_duration(250_000_000), "250ms");
        assert_eq!(human_duration(1_240_000_000), "1.24s");
        assert_eq!(human_duration(125_000_000_000), "2m05s");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4608), "4.5KiB");
        assert_eq!(human_size(12 << 20), "12MiB");
    }

    #[test]
    fn dump() {
        assert_eq!(
            hex_dump(b"{\"a\":1}\x00\x01"),
            "00000000  7b 22 61 22 3a 31 7d 00  01                       |{\"a\":1}..|\n"
        );
    }
}
