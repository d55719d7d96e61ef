//! Sizes as people write them: `1048576`, `64K`, `64KiB`, `1M`, `1MiB`,
//! `1G` (K and KiB both mean 1024). The one reader behind every size
//! flag of the CLI and every size variable of the tower layers.

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: expected a size such as 65536, 64KiB or 1MiB")]
pub struct SizeError {
    /// The text as given.
    pub text: String,
}

/// Reads a size in bytes.
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let bad = || SizeError {
        text: text.to_string(),
    };
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let number: usize = trimmed[..digits].parse().map_err(|_| bad())?;
    let unit: usize = match trimmed[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(unit).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bad_sizes() {
        for (text, bytes) in [
            ("1048576", 1 << 20),
            ("64K", 64 << 10),
            ("64KiB", 64 << 10),
            (" 1 MiB ", 1 << 20),
            ("2g", 2 << 30),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in ["", "-1", "1.5M", "12 parsecs", "K", "99999999999999999999G"] {
            let error = parse_size(text).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("expected a size")),
                "{text}: {error:?}"
            );
        }
    }
}
