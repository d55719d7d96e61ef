//! The one body decoder: `Content-Encoding` removed (gzip, deflate as
//! zlib or raw, br, zstd, and stacks of them such as `gzip, br`), with a
//! bound on what is inflated against decompression bombs.
//!
//! `show`, `diff` and redaction all call [`decode`], so a body reads the
//! same everywhere. It lives in the model crate: decompression works on
//! bytes in memory (no I/O), and redaction, which needs it, lives here.

use std::io::Read;

/// Most bytes a body is inflated to by default (64 MiB).
pub const MAX_DECODED: usize = 64 << 20;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodingError {
    /// A coding this decoder does not know (`compress`, `foo`).
    #[error("unknown content coding {0:?}")]
    Unknown(String),
    /// The bytes are not what the coding says.
    #[error("the {coding} body does not decode: {reason}")]
    Broken {
        /// The coding being removed.
        coding: String,
        /// What the decompressor said.
        reason: String,
    },
    /// The body inflates past the bound.
    #[error("the {coding} body inflates past {limit} bytes")]
    TooLarge {
        /// The coding being removed.
        coding: String,
        /// The bound.
        limit: usize,
    },
}

/// The content codings a `Content-Encoding` value lists, in the order they
/// were applied, lower case, without `identity`.
pub fn codings(content_encoding: &str) -> Vec<String> {
    content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

/// Whether `content_encoding` says the body is encoded at all.
pub fn is_encoded(content_encoding: Option<&str>) -> bool {
    content_encoding.is_some_and(|c| !codings(c).is_empty())
}

/// `body` with every coding of `content_encoding` removed (the last one
/// applied first), inflated to at most `limit` bytes. `Ok(None)`: there
/// is no coding to remove. With `cut` (the body was cut at the recorder's
/// size cap), a stream that ends early gives what it decoded so far.
pub fn decode(
    content_encoding: &str,
    body: &[u8],
    limit: usize,
    cut: bool,
) -> Result<Option<Vec<u8>>, CodingError> {
    let codings = codings(content_encoding);
    if codings.is_empty() {
        return Ok(None);
    }
    let mut current: Option<Vec<u8>> = None;
    for coding in codings.iter().rev() {
        let input = current.as_deref().unwrap_or(body);
        current = Some(decode_one(coding, input, limit, cut)?);
    }
    Ok(current)
}

/// [`decode`], keeping the first `limit` decoded bytes of a body that
/// inflates past them instead of failing: the prefix, and whether it was
/// capped there (to be read as a body cut short). For the rules that read
/// a body without inflating more of it than may be stored.
pub fn decode_capped(
    content_encoding: &str,
    body: &[u8],
    limit: usize,
    cut: bool,
) -> Result<Option<(Vec<u8>, bool)>, CodingError> {
    let codings = codings(content_encoding);
    if codings.is_empty() {
        return Ok(None);
    }
    let mut current: Option<Vec<u8>> = None;
    let mut capped = false;
    for coding in codings.iter().rev() {
        let input = current.as_deref().unwrap_or(body);
        let (out, full) = decode_prefix(coding, input, limit, cut || capped)?;
        capped |= full;
        current = Some(out);
    }
    Ok(current.map(|out| (out, capped)))
}

fn decode_one(coding: &str, body: &[u8], limit: usize, cut: bool) -> Result<Vec<u8>, CodingError> {
    match decode_prefix(coding, body, limit, cut)? {
        (out, false) => Ok(out),
        (_, true) => Err(CodingError::TooLarge {
            coding: coding.to_string(),
            limit,
        }),
    }
}

/// One coding removed: at most `limit` bytes, and whether there were more.
fn decode_prefix(
    coding: &str,
    body: &[u8],
    limit: usize,
    cut: bool,
) -> Result<(Vec<u8>, bool), CodingError> {
    match coding {
        "gzip" | "x-gzip" => inflate(coding, flate2::read::MultiGzDecoder::new(body), limit, cut),
        "deflate" => {
            // "deflate" is zlib-wrapped by the RFC, but raw in some servers:
            // a zlib stream starts with a header whose check bits hold.
            let zlib = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib {
                inflate(coding, flate2::read::ZlibDecoder::new(body), limit, cut)
            } else {
                inflate(coding, flate2::read::DeflateDecoder::new(body), limit, cut)
            }
        }
        "br" => inflate(
            coding,
            brotli_decompressor::Decompressor::new(body, 4096),
            limit,
            cut,
        ),
        "zstd" => {
            let decoder =
                zstd::stream::read::Decoder::new(body).map_err(|e| CodingError::Broken {
                    coding: coding.to_string(),
                    reason: e.to_string(),
                })?;
            inflate(coding, decoder, limit, cut)
        }
        other => Err(CodingError::Unknown(other.to_string())),
    }
}

fn inflate(
    coding: &str,
    reader: impl Read,
    limit: usize,
    cut: bool,
) -> Result<(Vec<u8>, bool), CodingError> {
    let mut out = Vec::new();
    let read = reader.take(limit as u64 + 1).read_to_end(&mut out);
    if out.len() > limit {
        out.truncate(limit);
        return Ok((out, true));
    }
    match read {
        Ok(_) => Ok((out, false)),
        // A body cut short ends mid-stream: what came before is good.
        Err(_) if cut => Ok((out, false)),
        Err(e) => Err(CodingError::Broken {
            coding: coding.to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"{\"password\":\"hunter2\",\"items\":[1,2,3]}";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        e.write_all(data).unwrap();
        drop(e);
        out
    }

    #[test]
    fn every_coding_decodes() {
        let zstd = zstd::encode_all(TEXT, 3).unwrap();
        for (coding, body) in [
            ("gzip", gzip(TEXT)),
            ("x-gzip", gzip(TEXT)),
            ("deflate", zlib(TEXT)),
            ("deflate", raw_deflate(TEXT)),
            ("br", brotli(TEXT)),
            ("zstd", zstd),
            ("GZip ", gzip(TEXT)),
        ] {
            assert_eq!(
                decode(coding, &body, MAX_DECODED, false)
                    .unwrap()
                    .as_deref(),
                Some(TEXT),
                "{coding}"
            );
        }
        assert_eq!(decode("identity", TEXT, 10, false), Ok(None));
        assert_eq!(decode("", TEXT, 10, false), Ok(None));
    }

    #[test]
    fn stacked_codings_come_off_last_first() {
        let body = brotli(&gzip(TEXT));
        assert_eq!(
            decode("gzip, br", &body, MAX_DECODED, false)
                .unwrap()
                .as_deref(),
            Some(TEXT)
        );
        assert_eq!(
            decode("identity, gzip", &gzip(TEXT), MAX_DECODED, false)
                .unwrap()
                .as_deref(),
            Some(TEXT)
        );
    }

    #[test]
    fn bombs_stop_at_the_bound() {
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(
            bomb.len() * 100 < 1 << 20,
            "a small body that inflates a lot"
        );
        assert_eq!(
            decode("gzip", &bomb, 1000, false),
            Err(CodingError::TooLarge {
                coding: "gzip".into(),
                limit: 1000
            })
        );
        assert_eq!(
            decode("gzip", &bomb, 1 << 20, false)
                .unwrap()
                .map(|b| b.len()),
            Some(1 << 20)
        );
    }

    #[test]
    fn broken_and_cut_bodies() {
        let body = gzip(&TEXT.repeat(50));
        let cut = &body[..body.len() / 2];
        assert!(matches!(
            decode("gzip", cut, MAX_DECODED, false),
            Err(CodingError::Broken { .. })
        ));
        let prefix = decode("gzip", cut, MAX_DECODED, true).unwrap().unwrap();
        assert!(TEXT.repeat(50).starts_with(&prefix));
        assert!(matches!(
            decode("zstd", b"not zstd", MAX_DECODED, false),
            Err(CodingError::Broken { .. })
        ));
        assert_eq!(
            decode("compress", b"x", MAX_DECODED, false),
            Err(CodingError::Unknown("compress".into()))
        );
    }

    proptest::proptest! {
        // Any bytes under any coding give a body or an error, never a panic.
        #[test]
        fn decoding_is_total(
            coding in "(gzip|deflate|br|zstd|gzip, br|x)",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            cut: bool,
        ) {
            let _ = decode(&coding, &body, 1 << 16, cut);
        }
    }
}
