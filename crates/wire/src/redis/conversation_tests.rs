#![allow(clippy::unwrap_used)]

use reprise_model::redact::MARKER;

use super::*;
use crate::redis::encode_command;

const CAP: RedisOptions = RedisOptions { max_body: 1 << 20 };

fn cmd(args: &[&str]) -> Vec<u8> {
    encode_command(args)
}

fn args(exchange: &DbExchange) -> Vec<String> {
    let redis = exchange.call.redis.as_ref().unwrap();
    redis
        .args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn reply(exchange: &DbExchange) -> Option<&RespValue> {
    exchange.call.redis.as_ref().unwrap().reply.as_ref()
}

/// Runs a whole conversation: client bytes at 1, server bytes at 2.
fn run(client: &[u8], server: &[u8]) -> (Conversation, Vec<DbExchange>) {
    let mut conversation = Conversation::new(CAP);
    conversation.client(client, 1);
    conversation.server(server, 2);
    let exchanges = conversation.take();
    (conversation, exchanges)
}

#[test]
fn pipelined_commands_pair_with_replies_in_order() {
    let client = [
        cmd(&["SET", "k", "v"]),
        cmd(&["GET", "k"]),
        b"PING\r\n".to_vec(),
    ]
    .concat();
    let (conversation, exchanges) = run(&client, b"+OK\r\n$1\r\nv\r\n+PONG\r\n");
    assert_eq!(exchanges.len(), 3);
    assert_eq!(args(&exchanges[0]), ["SET", "k", "v"]);
    assert!(exchanges[0].call.write);
    assert_eq!(reply(&exchanges[1]).unwrap().data, b"v");
    assert!(!exchanges[1].call.write);
    assert_eq!(args(&exchanges[2]), ["PING"]);
    assert_eq!(exchanges[2].call.redis.as_ref().unwrap().reply_size, 7);
    assert_eq!((exchanges[0].started_ns, exchanges[0].ended_ns), (1, 2));
    assert_eq!(exchanges[0].call.resp_version, 2);
    assert!(conversation.broken().is_none());
}

#[test]
fn chunking_does_not_change_the_exchanges() {
    let client = [
        cmd(&["HSET", "h", "f", "v"]),
        cmd(&["HELLO", "3"]),
        cmd(&["HGETALL", "h"]),
    ]
    .concat();
    let server: &[u8] = b":1\r\n%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n";
    let (_, whole) = run(&client, server);
    let mut bytewise = Conversation::new(CAP);
    for &b in &client {
        bytewise.client(&[b], 1);
    }
    for &b in server {
        bytewise.server(&[b], 2);
    }
    assert_eq!(bytewise.take(), whole);
    assert_eq!(whole.len(), 3);
    assert_eq!(whole[2].call.resp_version, 3);
}

#[test]
fn hello_switches_the_version_only_when_it_succeeds() {
    let client = [
        cmd(&["HELLO", "3"]),
        cmd(&["HELLO", "3"]),
        cmd(&["HELLO", "2"]),
    ]
    .concat();
    let (conversation, exchanges) = run(
        &client,
        b"-NOPROTO sorry\r\n%1\r\n+proto\r\n:3\r\n*2\r\n+proto\r\n:2\r\n",
    );
    let versions: Vec<u32> = exchanges.iter().map(|e| e.call.resp_version).collect();
    assert_eq!(versions, [2, 3, 2]);
    assert_eq!(conversation.version(), RespVersion::Resp2);
}

#[test]
fn secrets_are_never_kept() {
    let client = [
        cmd(&["AUTH", "hunter2"]),
        cmd(&["HELLO", "3", "AUTH", "default", "hunter2"]),
    ]
    .concat();
    let (_, exchanges) = run(&client, b"+OK\r\n%0\r\n");
    assert_eq!(args(&exchanges[0]), ["AUTH", MARKER]);
    assert_eq!(args(&exchanges[1]), ["HELLO", "3", "AUTH", MARKER, MARKER]);
    let debug = format!("{exchanges:?}");
    assert!(!debug.contains("hunter2"));
}

#[test]
fn exec_writes_when_a_queued_command_does() {
    let client = [
        cmd(&["MULTI"]),
        cmd(&["GET", "a"]),
        cmd(&["EXEC"]),
        cmd(&["MULTI"]),
        cmd(&["INCR", "a"]),
        cmd(&["EXEC"]),
    ]
    .concat();
    let server = b"+OK\r\n+QUEUED\r\n*1\r\n$-1\r\n+OK\r\n+QUEUED\r\n*1\r\n:1\r\n";
    let (_, exchanges) = run(&client, server);
    let writes: Vec<bool> = exchanges.iter().map(|e| e.call.write).collect();
    assert_eq!(writes, [false, false, false, false, true, true]);
    assert_eq!(reply(&exchanges[4]).unwrap().data, b"QUEUED");
}

#[test]
fn subscribe_passes_the_connection_through() {
    let client = [
        cmd(&["GET", "a"]),
        cmd(&["SUBSCRIBE", "ch"]),
        cmd(&["PING"]),
    ]
    .concat();
    let server: &[u8] = b"$-1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
    let (mut conversation, exchanges) = run(&client, server);
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[1].call.not_mockable, "pub/sub");
    assert_eq!(reply(&exchanges[1]).unwrap().items.len(), 3);
    conversation.client(&cmd(&["UNSUBSCRIBE"]), 3);
    conversation.server(b"garbage that is not RESP", 4);
    let passthrough = conversation.passthrough().unwrap();
    assert_eq!(passthrough.reason, "pub/sub");
    assert_eq!(passthrough.commands, 1);
    assert_eq!(passthrough.server_bytes, 33 + 24);
    assert!(conversation.broken().is_none());
    assert!(conversation.close(5, None).is_empty());
}

#[test]
fn a_failed_subscribe_is_an_ordinary_exchange() {
    let (conversation, exchanges) =
        run(&cmd(&["SUBSCRIBE"]), b"-ERR wrong number of arguments\r\n");
    assert_eq!(exchanges[0].call.not_mockable, "");
    assert!(conversation.passthrough().is_none());
}

#[test]
fn resp3_pushes_are_out_of_band() {
    let client = [cmd(&["HELLO", "3"]), cmd(&["GET", "k"])].concat();
    let server = b"%0\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$1\r\nv\r\n>1\r\n+x\r\n";
    let (conversation, exchanges) = run(&client, server);
    assert_eq!(exchanges.len(), 2);
    assert_eq!(reply(&exchanges[1]).unwrap().data, b"v");
    assert_eq!(conversation.pushes_skipped(), 2);
}

#[test]
fn client_reply_off_stops_recording_after_earlier_replies() {
    let client = [
        cmd(&["GET", "a"]),
        cmd(&["CLIENT", "REPLY", "OFF"]),
        cmd(&["SET", "a", "1"]),
    ]
    .concat();
    let mut conversation = Conversation::new(CAP);
    conversation.client(&client, 1);
    assert!(conversation.take().is_empty());
    conversation.server(b"$-1\r\n", 2);
    let exchanges = conversation.take();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[1].call.not_mockable, "CLIENT REPLY OFF");
    assert_eq!(reply(&exchanges[1]), None);
    assert_eq!(exchanges[1].incomplete, None);
    assert_eq!(conversation.passthrough().unwrap().commands, 1);
}

#[test]
fn a_reply_over_the_cap_is_measured_not_kept() {
    let mut conversation = Conversation::new(RedisOptions { max_body: 16 });
    conversation.client(&cmd(&["GET", "big"]), 1);
    conversation.server(b"$100\r\n", 2);
    conversation.server(&[b'x'; 100], 3);
    conversation.server(b"\r\n+OK\r\n", 4);
    let exchanges = conversation.take();
    let redis = exchanges[0].call.redis.as_ref().unwrap();
    assert_eq!(
        (
            redis.reply_size,
            redis.reply_truncated,
            redis.reply.is_some()
        ),
        (108, true, false)
    );
    assert!(
        exchanges[0]
            .call
            .not_mockable
            .contains("over the 16-byte cap")
    );
    assert_eq!(exchanges[0].ended_ns, 4);
    // The +OK had no command: the stream no longer pairs.
    assert_eq!(
        conversation.broken().unwrap().kind,
        RespError::UnexpectedReply
    );
}

#[test]
fn a_command_over_the_cap_is_not_mockable() {
    let mut conversation = Conversation::new(RedisOptions { max_body: 8 });
    conversation.client(&cmd(&["SET", "k", "0123456789"]), 1);
    conversation.server(b"+OK\r\n", 2);
    let exchanges = conversation.take();
    assert_eq!(args(&exchanges[0]), ["SET", "k"]);
    assert!(exchanges[0].call.write);
    assert!(exchanges[0].call.not_mockable.contains("command of"));
}

#[test]
fn close_leaves_waiting_commands_incomplete() {
    let mut conversation = Conversation::new(CAP);
    conversation.client(&[cmd(&["GET", "a"]), cmd(&["BLPOP", "l", "0"])].concat(), 1);
    conversation.server(b"$-1\r\n", 2);
    let exchanges = conversation.close(9, Some("reset by peer"));
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].incomplete, None);
    assert_eq!(exchanges[1].ended_ns, 9);
    assert!(
        exchanges[1]
            .incomplete
            .as_deref()
            .unwrap()
            .contains("reset by peer")
    );
    assert!(exchanges[1].call.write);
    conversation.client(&cmd(&["GET", "b"]), 10);
    assert!(conversation.close(11, None).is_empty());
}

#[test]
fn garbage_breaks_the_conversation_not_the_relay() {
    let mut conversation = Conversation::new(CAP);
    conversation.client(&cmd(&["GET", "a"]), 1);
    conversation.server(b"HTTP/1.1 400 Bad Request\r\n", 2);
    let error = conversation.broken().unwrap().clone();
    assert_eq!(error.direction, Direction::Server);
    assert_eq!(error.kind, RespError::UnknownType(b'H'));
    assert_eq!(
        error.to_string(),
        "redis server stream at byte 0: unknown type byte 0x48"
    );
    let exchanges = conversation.take();
    assert!(
        exchanges[0]
            .incomplete
            .as_deref()
            .unwrap()
            .contains("unknown type byte")
    );
    conversation.server(b"+OK\r\n", 3);
    conversation.client(b"*x\r\n", 3);
    assert!(conversation.take().is_empty());
}
