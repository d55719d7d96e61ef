//! Property tests of the Redis codec: what the encoder writes the parser
//! reads back the same, however the bytes are split; commands and whole
//! conversations too.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use reprise_model::{RespKind, RespValue};
use reprise_wire::redis::{
    CommandParser, Conversation, RedisOptions, ReplyParser, RespVersion, encode, encode_command,
};

fn leaf(kind: RespKind, data: Vec<u8>) -> RespValue {
    RespValue {
        kind: kind as i32,
        data,
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

/// Text a line may hold: no CR, no LF.
fn line_text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no line breaks", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..24)
}

fn resp2_leaf() -> impl Strategy<Value = RespValue> {
    prop_oneof![
        line_text().prop_map(|t| leaf(RespKind::SimpleString, t)),
        line_text().prop_map(|t| leaf(RespKind::Error, t)),
        any::<i64>().prop_map(|n| leaf(RespKind::Integer, n.to_string().into_bytes())),
        bytes().prop_map(|b| leaf(RespKind::BulkString, b)),
        Just(leaf(RespKind::Null, Vec::new())),
        Just(leaf(RespKind::NullArray, Vec::new())),
    ]
}

fn resp2_value() -> impl Strategy<Value = RespValue> {
    resp2_leaf().prop_recursive(4, 32, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(|items| agg(RespKind::Array, items))
    })
}

fn resp3_leaf() -> impl Strategy<Value = RespValue> + Clone {
    prop_oneof![
        line_text().prop_map(|t| leaf(RespKind::SimpleString, t)),
        line_text().prop_map(|t| leaf(RespKind::Error, t)),
        any::<i64>().prop_map(|n| leaf(RespKind::Integer, n.to_string().into_bytes())),
        bytes().prop_map(|b| leaf(RespKind::BulkString, b)),
        Just(leaf(RespKind::Null, Vec::new())),
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            Just("inf".to_owned()),
            Just("-inf".to_owned()),
            Just("nan".to_owned()),
            Just("1.5e+300".to_owned()),
        ]
        .prop_map(|t| leaf(RespKind::Double, t.into_bytes())),
        any::<bool>().prop_map(|b| leaf(
            RespKind::Boolean,
            if b { b"t".to_vec() } else { b"f".to_vec() }
        )),
        bytes().prop_map(|b| leaf(RespKind::BlobError, b)),
        bytes().prop_map(|b| leaf(RespKind::VerbatimString, [b"txt:".as_slice(), &b].concat())),
        "-?[1-9][0-9]{0,40}".prop_map(|t| leaf(RespKind::BigNumber, t.into_bytes())),
    ]
}

fn pairs(inner: impl Strategy<Value = RespValue> + Clone) -> impl Strategy<Value = Vec<RespValue>> {
    proptest::collection::vec((inner.clone(), inner), 0..4)
        .prop_map(|pairs| pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
}

fn resp3_value() -> impl Strategy<Value = RespValue> {
    let tree = resp3_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|i| agg(RespKind::Array, i)),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|i| agg(RespKind::Set, i)),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|i| agg(RespKind::Push, i)),
            pairs(inner).prop_map(|i| agg(RespKind::Map, i)),
        ]
    });
    (tree, proptest::option::of(pairs(resp3_leaf()))).prop_map(|(mut value, attributes)| {
        value.attributes = attributes.map(|items| Box::new(agg(RespKind::Map, items)));
        value
    })
}

/// Splits `bytes` at the given points (taken modulo its length).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        out.push(&bytes[start..p]);
        start = p;
    }
    out
}

fn parse_all(chunks: &[&[u8]]) -> Vec<RespValue> {
    let mut parser = ReplyParser::new(u64::MAX);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(reply) = parser.parse(&mut input).unwrap() {
            out.push(reply.value.unwrap());
        }
    }
    assert!(!parser.in_progress());
    out
}

proptest! {
    #[test]
    fn resp3_values_round_trip_however_split(
        values in proptest::collection::vec(resp3_value(), 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| encode(v, RespVersion::Resp3)).collect();
        prop_assert_eq!(&parse_all(&[&bytes]), &values);
        prop_assert_eq!(&parse_all(&split(&bytes, &cuts)), &values);
    }

    #[test]
    fn resp2_values_round_trip_however_split(
        values in proptest::collection::vec(resp2_value(), 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| encode(v, RespVersion::Resp2)).collect();
        prop_assert_eq!(&parse_all(&split(&bytes, &cuts)), &values);
    }

    #[test]
    fn resp3_values_on_resp2_still_frame(value in resp3_value()) {
        let bytes = encode(&value, RespVersion::Resp2);
        prop_assert_eq!(parse_all(&[&bytes]).len(), 1);
    }

    #[test]
    fn commands_round_trip_however_split(
        commands in proptest::collection::vec(proptest::collection::vec(bytes(), 1..5), 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes: Vec<u8> = commands.iter().flat_map(|c| encode_command(c)).collect();
        let mut parser = CommandParser::new(u64::MAX);
        let mut got = Vec::new();
        for chunk in split(&bytes, &cuts) {
            let mut input = chunk;
            while let Some(command) = parser.parse(&mut input, 0).unwrap() {
                got.push(command.args);
            }
        }
        prop_assert_eq!(got, commands);
    }

    #[test]
    fn conversations_do_not_depend_on_chunking(
        exchanges in proptest::collection::vec(
            (proptest::collection::vec(bytes(), 1..4), resp3_value()),
            1..6,
        ),
        client_cuts in proptest::collection::vec(any::<usize>(), 0..8),
        server_cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let client: Vec<u8> = exchanges.iter().flat_map(|(c, _)| encode_command(c)).collect();
        let server: Vec<u8> = exchanges
            .iter()
            .flat_map(|(_, r)| encode(r, RespVersion::Resp3))
            .collect();
        let options = RedisOptions { max_body: 64 };
        let mut whole = Conversation::new(options);
        whole.client(&client, 1);
        whole.server(&server, 2);
        let mut split_up = Conversation::new(options);
        for chunk in split(&client, &client_cuts) {
            split_up.client(chunk, 1);
        }
        for chunk in split(&server, &server_cuts) {
            split_up.server(chunk, 2);
        }
        prop_assert_eq!(whole.broken(), split_up.broken());
        prop_assert_eq!(whole.passthrough(), split_up.passthrough());
        prop_assert_eq!(whole.close(3, None), split_up.close(3, None));
    }
}
