//! Arbitrary bytes as a Redis connection's chunks, client and server
//! interleaved, through the recorder's Conversation and the mock's
//! Session: they never panic, and chunking never changes what they cut.
//! Every reply value parsed re-encodes (RESP3) to bytes that parse back
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprise_model::{RespKind, RespValue};
use reprise_wire::redis::{Conversation, RedisOptions, ReplyParser, RespVersion, Session, encode};

/// The input as chunks: a header byte (bit 7: from the server; bits 0-6:
/// length), then that many bytes.
fn chunks(mut data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut out = Vec::new();
    while let Some((&header, rest)) = data.split_first() {
        let len = usize::from(header & 0x7f).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        out.push((header & 0x80 != 0, chunk));
        data = rest;
    }
    out
}

/// RESP3 has one null: a RESP2 null array comes back as null.
fn normalise(value: &mut RespValue) {
    if value.kind == RespKind::NullArray as i32 {
        value.kind = RespKind::Null as i32;
    }
    value.items.iter_mut().for_each(normalise);
    if let Some(attributes) = &mut value.attributes {
        normalise(attributes);
    }
}

fn round_trip(server: &[u8]) {
    let mut parser = ReplyParser::new(1 << 16);
    let mut input = server;
    while let Ok(Some(reply)) = parser.parse(&mut input) {
        let Some(mut value) = reply.value else {
            continue;
        };
        let bytes = encode(&value, RespVersion::Resp3);
        let mut again = ReplyParser::new(u64::MAX);
        let mut encoded = bytes.as_slice();
        let parsed = again.parse(&mut encoded);
        let mut back = match parsed {
            Ok(Some(reply)) => reply.value.unwrap_or_default(),
            other => panic!(
                "{value:?} encoded as {:?} parsed as {other:?}",
                bytes.escape_ascii().to_string()
            ),
        };
        assert!(encoded.is_empty());
        normalise(&mut value);
        normalise(&mut back);
        assert_eq!(value, back);
        // RESP2 encodings parse too.
        let resp2 = encode(&value, RespVersion::Resp2);
        let mut resp2 = resp2.as_slice();
        assert!(matches!(
            ReplyParser::new(u64::MAX).parse(&mut resp2),
            Ok(Some(_))
        ));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cap, data)) = data.split_first() else {
        return;
    };
    let options = RedisOptions {
        max_body: u64::from(cap) * 4,
    };
    let chunks = chunks(data);
    let mut whole = Conversation::new(options);
    let mut bytewise = Conversation::new(options);
    let mut session = Session::new(u64::from(cap) * 4);
    let mut session_bytewise = Session::new(u64::from(cap) * 4);
    let mut server_bytes = Vec::new();
    for (at, (from_server, chunk)) in chunks.iter().enumerate() {
        let at = at as u64;
        if *from_server {
            whole.server(chunk, at);
            chunk
                .iter()
                .for_each(|b| bytewise.server(std::slice::from_ref(b), at));
            server_bytes.extend_from_slice(chunk);
        } else {
            whole.client(chunk, at);
            chunk
                .iter()
                .for_each(|b| bytewise.client(std::slice::from_ref(b), at));
            if chunk.is_empty() {
                continue;
            }
            let commands = session.feed(chunk);
            let mut split = Ok(Vec::new());
            for b in chunk.iter() {
                match session_bytewise.feed(std::slice::from_ref(b)) {
                    Ok(more) => {
                        if let Ok(all) = &mut split {
                            all.extend(more);
                        }
                    }
                    Err(e) => {
                        split = Err(e);
                        break;
                    }
                }
            }
            match (&commands, &split) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("session chunking changed {commands:?} into {split:?}"),
            }
        }
    }
    assert_eq!(whole.broken(), bytewise.broken());
    assert_eq!(whole.passthrough(), bytewise.passthrough());
    let end = chunks.len() as u64;
    assert_eq!(
        whole.close(end, Some("eof")),
        bytewise.close(end, Some("eof"))
    );
    round_trip(&server_bytes);
});
