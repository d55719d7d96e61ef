//! RESP out: the mock's replies, encoded for the protocol version the
//! client's connection is in, and commands (for clients and tests).

use std::io::Write as _;

use reprise_model::{RespKind, RespValue};

/// A connection's protocol version: RESP2 until a `HELLO 3` succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RespVersion {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl RespVersion {
    /// The version a recorded `resp_version` names (3, else RESP2).
    pub fn from_number(number: u32) -> Self {
        if number == 3 {
            RespVersion::Resp3
        } else {
            RespVersion::Resp2
        }
    }

    /// The number stored in `DbCall.resp_version`.
    pub fn number(self) -> u32 {
        match self {
            RespVersion::Resp2 => 2,
            RespVersion::Resp3 => 3,
        }
    }
}

/// Encodes `value` as RESP for a connection in `version`.
///
/// RESP3-only types on a RESP2 connection become what Redis itself sends
/// there: a map its keys and values in a flat array, a set or push an
/// array, null `$-1`, a boolean `:1`/`:0`, a double or big number a bulk
/// string of its text, a verbatim string a bulk string without its
/// `txt:` prefix, a blob error a simple error; attributes are left out.
/// On RESP3, RESP2's null array is `_`. Text that cannot hold CR or LF
/// (simple strings, errors, numbers) has them replaced by spaces, so the
/// output always frames.
pub fn encode(value: &RespValue, version: RespVersion) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, version, &mut out);
    out
}

/// [`encode`], appending to `out`.
pub fn encode_into(value: &RespValue, version: RespVersion, out: &mut Vec<u8>) {
    let resp3 = version == RespVersion::Resp3;
    if resp3 && let Some(attributes) = &value.attributes {
        aggregate(
            b'|',
            &attributes.items,
            attributes.items.len() / 2 * 2,
            version,
            out,
        );
    }
    let kind = RespKind::try_from(value.kind).unwrap_or(RespKind::Null);
    let data = value.data.as_slice();
    match kind {
        RespKind::SimpleString => line(b'+', data, out),
        RespKind::Error => line(b'-', data, out),
        RespKind::Integer => line(b':', data, out),
        RespKind::BulkString => blob(b'$', data, out),
        RespKind::Unspecified | RespKind::Null => {
            out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" })
        }
        RespKind::NullArray => out.extend_from_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" }),
        RespKind::Array => aggregate(b'*', &value.items, value.items.len(), version, out),
        RespKind::Double | RespKind::BigNumber if !resp3 => blob(b'$', data, out),
        RespKind::Double => line(b',', data, out),
        RespKind::BigNumber => line(b'(', data, out),
        RespKind::Boolean => {
            let truth = data == b"t";
            match (resp3, truth) {
                (true, true) => out.extend_from_slice(b"#t\r\n"),
                (true, false) => out.extend_from_slice(b"#f\r\n"),
                (false, true) => out.extend_from_slice(b":1\r\n"),
                (false, false) => out.extend_from_slice(b":0\r\n"),
            }
        }
        RespKind::BlobError if resp3 => blob(b'!', data, out),
        RespKind::BlobError => line(b'-', data, out),
        RespKind::VerbatimString if resp3 => blob(b'=', data, out),
        RespKind::VerbatimString => {
            let text = match data {
                [_, _, _, b':', text @ ..] => text,
                _ => data,
            };
            blob(b'$', text, out);
        }
        RespKind::Map => {
            let prefix = if resp3 { b'%' } else { b'*' };
            aggregate(
                prefix,
                &value.items,
                value.items.len() / 2 * 2,
                version,
                out,
            );
        }
        RespKind::Set => aggregate(
            if resp3 { b'~' } else { b'*' },
            &value.items,
            value.items.len(),
            version,
            out,
        ),
        RespKind::Push => aggregate(
            if resp3 { b'>' } else { b'*' },
            &value.items,
            value.items.len(),
            version,
            out,
        ),
    }
}

/// A command as clients send it: an array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    header(b'*', args.len(), &mut out);
    for arg in args {
        blob(b'$', arg.as_ref(), &mut out);
    }
    out
}

/// The mock's answer to a command it has no recording for:
/// `-ERR reprise mock miss: <detail>`, the detail's line breaks made
/// spaces.
pub fn miss_reply(detail: &str) -> Vec<u8> {
    error_reply(&format!("reprise mock miss: {detail}"))
}

/// An `-ERR message` reply (CR and LF in `message` become spaces): what
/// reprise answers a Redis client itself.
pub fn error_reply(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    line(b'-', format!("ERR {message}").as_bytes(), &mut out);
    out
}

fn header(prefix: u8, count: usize, out: &mut Vec<u8>) {
    out.push(prefix);
    let _ = write!(out, "{count}\r\n");
}

fn line(prefix: u8, text: &[u8], out: &mut Vec<u8>) {
    out.push(prefix);
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

fn blob(prefix: u8, data: &[u8], out: &mut Vec<u8>) {
    header(prefix, data.len(), out);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// An aggregate of the first `count` of `items`; maps and attributes
/// declare pairs on RESP3.
fn aggregate(
    prefix: u8,
    items: &[RespValue],
    count: usize,
    version: RespVersion,
    out: &mut Vec<u8>,
) {
    let declared = if matches!(prefix, b'%' | b'|') {
        count / 2
    } else {
        count
    };
    header(prefix, declared, out);
    for item in items.iter().take(count) {
        encode_into(item, version, out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaf(kind: RespKind, data: &[u8]) -> RespValue {
        RespValue {
            kind: kind as i32,
            data: data.to_vec(),
            ..RespValue::default()
        }
    }

    fn agg(kind: RespKind, items: Vec<RespValue>) -> RespValue {
        RespValue {
            kind: kind as i32,
            items,
            ..RespValue::default()
        }
    }

    fn both(value: &RespValue) -> (String, String) {
        let text = |v| String::from_utf8(encode(value, v)).unwrap();
        (text(RespVersion::Resp2), text(RespVersion::Resp3))
    }

    #[test]
    fn resp2_types_are_the_same_in_both() {
        use RespKind::*;
        for (value, want) in [
            (leaf(SimpleString, b"OK"), "+OK\r\n"),
            (leaf(Error, b"WRONGTYPE x"), "-WRONGTYPE x\r\n"),
            (leaf(Integer, b"-3"), ":-3\r\n"),
            (leaf(BulkString, b"a\r\nb"), "$4\r\na\r\nb\r\n"),
            (agg(Array, vec![leaf(Integer, b"1")]), "*1\r\n:1\r\n"),
        ] {
            assert_eq!(both(&value), (want.to_owned(), want.to_owned()));
        }
    }

    #[test]
    fn resp3_types_are_downgraded_on_resp2_as_redis_does() {
        use RespKind::*;
        let pairs = vec![leaf(BulkString, b"f"), leaf(Integer, b"1")];
        let cases = [
            (
                agg(Map, pairs.clone()),
                "*2\r\n$1\r\nf\r\n:1\r\n",
                "%1\r\n$1\r\nf\r\n:1\r\n",
            ),
            (
                agg(Set, vec![leaf(Integer, b"1")]),
                "*1\r\n:1\r\n",
                "~1\r\n:1\r\n",
            ),
            (
                agg(Push, vec![leaf(BulkString, b"m")]),
                "*1\r\n$1\r\nm\r\n",
                ">1\r\n$1\r\nm\r\n",
            ),
            (leaf(Null, b""), "$-1\r\n", "_\r\n"),
            (leaf(NullArray, b""), "*-1\r\n", "_\r\n"),
            (leaf(Boolean, b"t"), ":1\r\n", "#t\r\n"),
            (leaf(Boolean, b"f"), ":0\r\n", "#f\r\n"),
            (leaf(Double, b"1.5"), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (leaf(BigNumber, b"123"), "$3\r\n123\r\n", "(123\r\n"),
            (
                leaf(BlobError, b"ERR a\nb"),
                "-ERR a b\r\n",
                "!7\r\nERR a\nb\r\n",
            ),
            (
                leaf(VerbatimString, b"txt:hi"),
                "$2\r\nhi\r\n",
                "=6\r\ntxt:hi\r\n",
            ),
        ];
        for (value, resp2, resp3) in cases {
            assert_eq!(both(&value), (resp2.to_owned(), resp3.to_owned()));
        }
    }

    #[test]
    fn attributes_only_on_resp3() {
        let mut value = leaf(RespKind::Integer, b"1");
        value.attributes = Some(Box::new(agg(
            RespKind::Map,
            vec![
                leaf(RespKind::SimpleString, b"ttl"),
                leaf(RespKind::Integer, b"3600"),
            ],
        )));
        assert_eq!(
            both(&value),
            (":1\r\n".into(), "|1\r\n+ttl\r\n:3600\r\n:1\r\n".into())
        );
    }

    #[test]
    fn line_breaks_never_break_framing() {
        assert_eq!(
            encode(&leaf(RespKind::SimpleString, b"a\r\nb"), RespVersion::Resp2),
            b"+a  b\r\n"
        );
        assert_eq!(
            miss_reply("GET k\r\n"),
            b"-ERR reprise mock miss: GET k  \r\n"
        );
    }

    #[test]
    fn commands() {
        assert_eq!(
            encode_command(&["GET", "k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
