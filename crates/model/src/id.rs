//! Exchange ids.
//!
//! Ids reprise makes are 16 bytes in the UUIDv7 layout: a millisecond
//! timestamp then random bits, so they sort roughly by time and sampling
//! decisions taken from them are uniform.

/// A new, time-ordered, random exchange id (16 bytes). The random bits
/// come from a thread-local generator (uuid's `fast-rng`), not a system
/// call per id: ids are made on the proxy's forward path.
pub fn new_id() -> Vec<u8> {
    new_id_bytes().to_vec()
}

/// A new exchange id as its 16 bytes (no allocation).
pub fn new_id_bytes() -> [u8; 16] {
    *uuid::Uuid::now_v7().as_bytes()
}

/// Parses the hex form of an id (any even length up to 64 hex digits).
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || !text.len().is_multiple_of(2) || text.len() > 64 {
        return None;
    }
    let digits = text.as_bytes();
    let mut out = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks(2) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_parse_back() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        let hex = crate::display_id(&a);
        assert_eq!(parse_hex(&hex).as_deref(), Some(a.as_ref()));
    }

    #[test]
    fn bad_hex_is_rejected() {
        for bad in ["", "abc", "zz", "0g"] {
            assert_eq!(parse_hex(bad), None, "{bad}");
        }
    }
}
