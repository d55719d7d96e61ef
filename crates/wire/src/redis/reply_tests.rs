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

fn one(bytes: &[u8]) -> Result<RespValue, RespError> {
    let mut parser = ReplyParser::new(u64::MAX);
    let mut input = bytes;
    let reply = parser.parse(&mut input)?.unwrap();
    assert!(input.is_empty(), "left over: {input:?}");
    assert_eq!(reply.size, bytes.len() as u64);
    Ok(reply.value.unwrap())
}

/// Fed one byte at a time, the same value comes out.
fn bytewise(bytes: &[u8]) -> RespValue {
    let mut parser = ReplyParser::new(u64::MAX);
    for (i, byte) in bytes.iter().enumerate() {
        let mut input = std::slice::from_ref(byte);
        if let Some(reply) = parser.parse(&mut input).unwrap() {
            assert_eq!(i + 1, bytes.len());
            return reply.value.unwrap();
        }
    }
    panic!("incomplete");
}

#[test]
fn simple_types_from_the_spec() {
    use RespKind::*;
    let cases: &[(&[u8], RespValue)] = &[
        (b"+OK\r\n", leaf(SimpleString, b"OK")),
        (
            b"-ERR this is the error description\r\n",
            leaf(Error, b"ERR this is the error description"),
        ),
        (b":1234\r\n", leaf(Integer, b"1234")),
        (b":-5\r\n", leaf(Integer, b"-5")),
        (b"$11\r\nhello world\r\n", leaf(BulkString, b"hello world")),
        (b"$0\r\n\r\n", leaf(BulkString, b"")),
        (b"$-1\r\n", leaf(Null, b"")),
        (b"*-1\r\n", leaf(NullArray, b"")),
        (b"_\r\n", leaf(Null, b"")),
        (b",1.23\r\n", leaf(Double, b"1.23")),
        (b",inf\r\n", leaf(Double, b"inf")),
        (b",-nan\r\n", leaf(Double, b"-nan")),
        (b"#t\r\n", leaf(Boolean, b"t")),
        (b"#f\r\n", leaf(Boolean, b"f")),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            leaf(BlobError, b"SYNTAX invalid syntax"),
        ),
        (
            b"=15\r\ntxt:Some string\r\n",
            leaf(VerbatimString, b"txt:Some string"),
        ),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            leaf(BigNumber, b"3492890328409238509324850943850943825024385"),
        ),
        (b"$4\r\na\r\nb\r\n", leaf(BulkString, b"a\r\nb")),
    ];
    for (bytes, want) in cases {
        assert_eq!(&one(bytes).unwrap(), want, "{}", bytes.escape_ascii());
        assert_eq!(&bytewise(bytes), want);
    }
}

#[test]
fn aggregates_from_the_spec() {
    use RespKind::*;
    let nested = b"*2\r\n*3\r\n:1\r\n$5\r\nhello\r\n:2\r\n#f\r\n";
    let want = agg(
        Array,
        vec![
            agg(
                Array,
                vec![
                    leaf(Integer, b"1"),
                    leaf(BulkString, b"hello"),
                    leaf(Integer, b"2"),
                ],
            ),
            leaf(Boolean, b"f"),
        ],
    );
    assert_eq!(one(nested).unwrap(), want);
    assert_eq!(bytewise(nested), want);
    let map = b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n";
    assert_eq!(
        one(map).unwrap(),
        agg(
            Map,
            vec![
                leaf(SimpleString, b"first"),
                leaf(Integer, b"1"),
                leaf(SimpleString, b"second"),
                leaf(Integer, b"2")
            ]
        )
    );
    let set = one(b"~2\r\n+orange\r\n#t\r\n").unwrap();
    assert_eq!(set.kind, Set as i32);
    assert_eq!(set.items.len(), 2);
    let push = b">3\r\n+message\r\n+somechannel\r\n+this is the message\r\n";
    let mut parser = ReplyParser::new(u64::MAX);
    let reply = parser.parse(&mut &push[..]).unwrap().unwrap();
    assert!(reply.push);
    assert_eq!(reply.value.unwrap().kind, Push as i32);
    assert_eq!(one(b"*0\r\n").unwrap(), agg(Array, vec![]));
    assert_eq!(one(b"%0\r\n").unwrap(), agg(Map, vec![]));
}

#[test]
fn attributes_attach_to_the_value_after_them() {
    use RespKind::*;
    let bytes = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n";
    let value = one(bytes).unwrap();
    assert_eq!(value.kind, Array as i32);
    assert_eq!(value.items.len(), 2);
    let attributes = value.attributes.unwrap();
    assert_eq!(attributes.items[0], leaf(SimpleString, b"key-popularity"));
    assert_eq!(bytewise(bytes).attributes, Some(attributes));
    let inner = one(b"*3\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3600\r\n:3\r\n").unwrap();
    assert_eq!(inner.items.len(), 3);
    assert!(inner.items[2].attributes.is_some());
    assert!(inner.items[1].attributes.is_none());
}

#[test]
fn streamed_strings_and_aggregates() {
    use RespKind::*;
    // The spec's example sends "d" for "ld" (10 bytes of "Hello world").
    let string = b"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;2\r\nld\r\n;0\r\n";
    assert_eq!(one(string).unwrap(), leaf(BulkString, b"Hello world"));
    assert_eq!(bytewise(string), leaf(BulkString, b"Hello world"));
    let array = b"*?\r\n:1\r\n:2\r\n:3\r\n.\r\n";
    assert_eq!(one(array).unwrap().items.len(), 3);
    let map = b"%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n";
    assert_eq!(bytewise(map).items.len(), 4);
    assert_eq!(one(b"%?\r\n+a\r\n.\r\n"), Err(RespError::UnexpectedEnd));
    assert_eq!(one(b".\r\n"), Err(RespError::UnexpectedEnd));
    assert_eq!(one(b"*1\r\n.\r\n"), Err(RespError::UnexpectedEnd));
    assert_eq!(one(b"$?\r\n:1\r\n"), Err(RespError::ExpectedChunk(b':')));
}

#[test]
fn pipelined_values_come_out_one_by_one() {
    let mut parser = ReplyParser::new(u64::MAX);
    let mut input: &[u8] = b"+OK\r\n:1\r\n$1\r\nx\r\n";
    let mut sizes = Vec::new();
    while let Some(reply) = parser.parse(&mut input).unwrap() {
        sizes.push(reply.size);
    }
    assert_eq!(sizes, [5, 4, 7]);
}

#[test]
fn malformed_values_are_typed_errors() {
    assert_eq!(one(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
    assert!(matches!(one(b"$-2\r\n"), Err(RespError::InvalidLength(_))));
    assert!(matches!(one(b"%-1\r\n"), Err(RespError::InvalidLength(_))));
    assert!(matches!(one(b"$abc\r\n"), Err(RespError::InvalidLength(_))));
    assert_eq!(
        one(b"$536870913\r\n"),
        Err(RespError::BulkTooLong(536_870_913))
    );
    assert_eq!(
        one(b"*2147483648\r\n"),
        Err(RespError::AggregateTooLong(2_147_483_648))
    );
    assert_eq!(
        one(b":12a\r\n"),
        Err(RespError::InvalidInteger("12a".into()))
    );
    assert_eq!(one(b"#x\r\n"), Err(RespError::InvalidBoolean("x".into())));
    assert_eq!(one(b"_x\r\n"), Err(RespError::InvalidNull("x".into())));
    assert_eq!(one(b"$1\r\nab\r\n"), Err(RespError::MissingCrlf));
    assert_eq!(one(b"+OK\n"), Err(RespError::BareLineFeed));
    let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
    assert_eq!(one(deep.as_bytes()), Err(RespError::TooDeep(MAX_DEPTH)));
}

#[test]
fn a_huge_declared_aggregate_reserves_little() {
    let mut parser = ReplyParser::new(u64::MAX);
    let mut input: &[u8] = b"*2147483647\r\n:1\r\n";
    assert_eq!(parser.parse(&mut input).unwrap(), None);
    assert!(parser.stack[0].items.capacity() <= RESERVE_AHEAD as usize);
}

#[test]
fn a_value_over_the_cap_is_measured_not_kept() {
    let mut parser = ReplyParser::new(8);
    let bytes = b"*2\r\n$10\r\n0123456789\r\n:1\r\n+OK\r\n";
    let mut input: &[u8] = bytes;
    let big = parser.parse(&mut input).unwrap().unwrap();
    assert_eq!(big.value, None);
    assert!(big.truncated);
    assert_eq!(big.size, 25);
    assert!(parser.blob.capacity() <= 8);
    let next = parser.parse(&mut input).unwrap().unwrap();
    assert_eq!(next.value, Some(leaf(RespKind::SimpleString, b"OK")));
    assert!(!next.truncated);
}
