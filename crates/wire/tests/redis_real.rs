//! Real clients (redis-cli, redis-benchmark, raw sockets) through a small
//! relay in the test to a real redis-server, the relay feeding a
//! Conversation as the recorder does; and a tiny mock built on Session and
//! encode answering a real redis-cli.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use reprise_model::redact::MARKER;
use reprise_model::{RespKind, RespValue};
use reprise_testkit::redis::{Redis, RedisOptions as ServerOptions};
use reprise_wire::DbExchange;
use reprise_wire::redis::{
    Conversation, Passthrough, RedisError, RedisOptions, ReplyParser, RespVersion, Session,
    command_key, encode, encode_command, miss_reply,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream as TokioStream};
use tokio::runtime::Runtime;

const DEADLINE: Duration = Duration::from_secs(30);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// What the relay recorded of one connection.
#[derive(Debug)]
struct Recorded {
    exchanges: Vec<DbExchange>,
    broken: Option<RedisError>,
    passthrough: Option<Passthrough>,
}

impl Recorded {
    /// The commands' names, without the `COMMAND DOCS` redis-cli sends
    /// first to learn the commands' hints.
    fn names(&self) -> Vec<String> {
        self.commands().map(name).collect()
    }

    fn commands(&self) -> impl Iterator<Item = &DbExchange> {
        self.exchanges.iter().filter(|e| name(e) != "COMMAND")
    }

    fn by_name(&self, wanted: &str) -> Vec<&DbExchange> {
        self.exchanges
            .iter()
            .filter(|e| name(e) == wanted)
            .collect()
    }
}

fn name(exchange: &DbExchange) -> String {
    let args = &exchange.call.redis.as_ref().unwrap().args;
    String::from_utf8_lossy(&args[0]).to_ascii_uppercase()
}

fn reply(exchange: &DbExchange) -> &RespValue {
    exchange
        .call
        .redis
        .as_ref()
        .unwrap()
        .reply
        .as_ref()
        .unwrap()
}

#[derive(Default)]
struct Book {
    open: usize,
    done: Vec<Recorded>,
}

/// A TCP relay to `upstream` that passes every byte through and feeds a
/// Conversation per connection, client bytes before it relays them.
struct Relay {
    port: u16,
    book: Arc<(Mutex<Book>, Condvar)>,
    _runtime: Runtime,
}

impl Relay {
    fn start(upstream: SocketAddr, max_body: u64) -> Relay {
        let runtime = Runtime::new().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let book = Arc::new((Mutex::new(Book::default()), Condvar::new()));
        let shared = book.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.0.lock().unwrap().open += 1;
                let shared = shared.clone();
                tokio::spawn(relay_one(client, upstream, max_body, shared));
            }
        });
        Relay {
            port,
            book,
            _runtime: runtime,
        }
    }

    /// Waits until no connection is open and at least `n` were recorded;
    /// hands over what was.
    fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let (lock, ready) = &*self.book;
        let deadline = Instant::now() + DEADLINE;
        let mut book = lock.lock().unwrap();
        while book.open > 0 || book.done.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "relay: {} open, {} done",
                book.open,
                book.done.len()
            );
            book = ready.wait_timeout(book, left).unwrap().0;
        }
        std::mem::take(&mut book.done)
    }
}

async fn relay_one(
    client: TokioStream,
    upstream: SocketAddr,
    max_body: u64,
    book: Arc<(Mutex<Book>, Condvar)>,
) {
    let server = TokioStream::connect(upstream).await.unwrap();
    let conversation = Arc::new(Mutex::new(Conversation::new(RedisOptions { max_body })));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up_conversation = conversation.clone();
    let up = async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            up_conversation.lock().unwrap().client(&buf[..n], now_ns());
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down_conversation = conversation.clone();
    let down = async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            down_conversation
                .lock()
                .unwrap()
                .server(&buf[..n], now_ns());
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
    let recorded = {
        let mut conversation = conversation.lock().unwrap();
        let mut exchanges = conversation.take();
        exchanges.extend(conversation.close(now_ns(), None));
        Recorded {
            exchanges,
            broken: conversation.broken().cloned(),
            passthrough: conversation.passthrough().cloned(),
        }
    };
    let (lock, ready) = &*book;
    let mut book = lock.lock().unwrap();
    book.open -= 1;
    book.done.push(recorded);
    ready.notify_all();
}

/// Runs redis-cli against `port` with `args`, feeding it `stdin`.
fn cli(port: u16, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw client: sends `bytes`, reads `replies` values back.
struct Raw {
    stream: TcpStream,
    parser: ReplyParser,
    pending: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw {
            stream,
            parser: ReplyParser::new(u64::MAX),
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn read(&mut self, replies: usize) -> Vec<RespValue> {
        let mut out = Vec::new();
        let mut buf = [0; 16 * 1024];
        loop {
            let mut input = self.pending.as_slice();
            while out.len() < replies {
                match self.parser.parse(&mut input).unwrap() {
                    Some(reply) => out.push(reply.value.unwrap()),
                    None => break,
                }
            }
            self.pending = input.to_vec();
            if out.len() == replies {
                return out;
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {} replies", out.len());
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn redis_cli_commands_and_an_error_reply() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), 1 << 20);
    let out = cli(
        relay.port,
        &[],
        b"SET greeting hello\nGET greeting\nLPUSH list a\nGET list\nINCR n\nDEL greeting\nPING\n",
    );
    assert!(out.contains("WRONGTYPE"), "{out}");
    let recorded = relay.wait_for(1);
    let conn = &recorded[0];
    assert_eq!(
        conn.names(),
        ["SET", "GET", "LPUSH", "GET", "INCR", "DEL", "PING"]
    );
    let commands: Vec<&DbExchange> = conn.commands().collect();
    let writes: Vec<bool> = commands.iter().map(|e| e.call.write).collect();
    assert_eq!(writes, [true, false, true, false, true, true, false]);
    assert_eq!(reply(commands[1]).data, b"hello");
    let wrongtype = reply(commands[3]);
    assert_eq!(wrongtype.kind, RespKind::Error as i32);
    assert!(wrongtype.data.starts_with(b"WRONGTYPE"));
    for exchange in &conn.exchanges {
        assert_eq!(exchange.incomplete, None);
        assert_eq!(exchange.call.resp_version, 2);
        assert!(exchange.started_ns <= exchange.ended_ns);
        assert_eq!(exchange.call.not_mockable, "");
    }
    assert!(conn.broken.is_none());
}

#[test]
fn resp3_replies_after_hello_3() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), 1 << 20);
    cli(
        relay.port,
        &["-3"],
        b"HSET h f v\nHGETALL h\nZADD z 1.5 m\nZSCORE z m\nSADD s a\nSMEMBERS s\nCONFIG GET maxmemory\nEXISTS nope\n",
    );
    let conn = &relay.wait_for(1)[0];
    assert!(conn.broken.is_none());
    let hello = &conn.by_name("HELLO")[0];
    assert_eq!(hello.call.resp_version, 3);
    assert_eq!(reply(hello).kind, RespKind::Map as i32);
    let map = reply(conn.by_name("HGETALL")[0]);
    assert_eq!(map.kind, RespKind::Map as i32);
    assert_eq!(
        map.items.iter().map(|i| i.data.clone()).collect::<Vec<_>>(),
        [b"f".to_vec(), b"v".to_vec()]
    );
    let score = reply(conn.by_name("ZSCORE")[0]);
    assert_eq!(
        (score.kind, score.data.as_slice()),
        (RespKind::Double as i32, &b"1.5"[..])
    );
    assert_eq!(
        reply(conn.by_name("SMEMBERS")[0]).kind,
        RespKind::Set as i32
    );
    assert_eq!(reply(conn.by_name("CONFIG")[0]).kind, RespKind::Map as i32);
    assert_eq!(
        reply(conn.by_name("EXISTS")[0]).kind,
        RespKind::Integer as i32
    );
    assert!(conn.exchanges.iter().all(|e| e.call.resp_version == 3));
    // What the mock would answer a RESP2 client is what Redis sends one.
    let resp2 = encode(map, RespVersion::Resp2);
    assert_eq!(resp2, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
}

#[test]
fn passwords_are_never_stored() {
    let password = "hunter2-not-for-tapes";
    let redis = Redis::start_with(ServerOptions {
        password: Some(password.to_owned()),
        ..Default::default()
    });
    let relay = Relay::start(redis.addr(), 1 << 20);
    let out = cli(
        relay.port,
        &["-a", password, "--no-auth-warning"],
        b"SET a 1\nGET a\n",
    );
    assert_eq!(out.trim(), "OK\n1");
    let mut raw = Raw::connect(relay.port);
    raw.send(
        &[
            encode_command(&["HELLO", "3", "AUTH", "default", password]),
            encode_command(&["GET", "a"]),
        ]
        .concat(),
    );
    let replies = raw.read(2);
    assert_eq!(replies[0].kind, RespKind::Map as i32);
    drop(raw);
    let recorded = relay.wait_for(2);
    let mut redacted = 0;
    for conn in &recorded {
        assert!(conn.broken.is_none());
        for exchange in &conn.exchanges {
            let bytes = exchange.call.encode_to_vec();
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes())
            );
            let args = &exchange.call.redis.as_ref().unwrap().args;
            redacted += args
                .iter()
                .filter(|a| a.as_slice() == MARKER.as_bytes())
                .count();
        }
    }
    // AUTH's password; HELLO's user and password.
    assert_eq!(redacted, 3);
    let hello = recorded
        .iter()
        .flat_map(|c| c.by_name("HELLO"))
        .next()
        .unwrap();
    assert_eq!(hello.call.resp_version, 3);
}

#[test]
fn multi_exec_writes_when_a_queued_command_does() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), 1 << 20);
    cli(
        relay.port,
        &[],
        b"MULTI\nSET a 1\nINCR a\nEXEC\nMULTI\nGET a\nEXEC\n",
    );
    let conn = &relay.wait_for(1)[0];
    let commands: Vec<&DbExchange> = conn.commands().collect();
    let writes: Vec<bool> = commands.iter().map(|e| e.call.write).collect();
    assert_eq!(writes, [false, true, true, true, false, false, false]);
    assert_eq!(reply(commands[1]).data, b"QUEUED");
    let exec = reply(commands[3]);
    assert_eq!(exec.kind, RespKind::Array as i32);
    assert_eq!(exec.items[1].data, b"2");
}

#[test]
fn subscribe_is_not_recorded_after() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), 1 << 20);
    let mut subscriber = Raw::connect(relay.port);
    subscriber.send(
        &[
            encode_command(&["GET", "x"]),
            encode_command(&["SUBSCRIBE", "news"]),
        ]
        .concat(),
    );
    subscriber.read(2);
    assert_eq!(cli(relay.port, &[], b"PUBLISH news hello\n").trim(), "1");
    let message = subscriber.read(1);
    assert_eq!(message[0].items[2].data, b"hello");
    subscriber.send(&encode_command(&["PING"]));
    subscriber.read(1);
    drop(subscriber);
    let recorded = relay.wait_for(2);
    let sub = recorded
        .iter()
        .find(|c| c.names().contains(&"SUBSCRIBE".to_owned()))
        .unwrap();
    assert_eq!(sub.names(), ["GET", "SUBSCRIBE"]);
    assert_eq!(sub.exchanges[1].call.not_mockable, "pub/sub");
    let passthrough = sub.passthrough.as_ref().unwrap();
    assert_eq!(passthrough.reason, "pub/sub");
    assert!(passthrough.server_bytes > 0 && passthrough.client_bytes > 0);
    let publish = recorded.iter().find(|c| c.names() == ["PUBLISH"]).unwrap();
    assert!(publish.by_name("PUBLISH")[0].call.write);
    assert!(recorded.iter().all(|c| c.broken.is_none()));
}

#[test]
fn pipelined_writes_pair_every_reply() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), 1 << 20);
    let mut raw = Raw::connect(relay.port);
    let mut bytes = Vec::new();
    for i in 0..300 {
        bytes.extend(encode_command(&["SET", &format!("k{i}"), &format!("v{i}")]));
        bytes.extend(encode_command(&["GET", &format!("k{i}")]));
    }
    raw.send(&bytes);
    raw.read(600);
    drop(raw);
    let mut piped = Vec::new();
    for i in 0..1000 {
        piped.extend(encode_command(&["RPUSH", "piped", &i.to_string()]));
    }
    let out = cli(relay.port, &["--pipe"], &piped);
    assert!(out.contains("replies: 1000"), "{out}");
    let recorded = relay.wait_for(2);
    for conn in &recorded {
        assert!(conn.broken.is_none());
        assert!(conn.exchanges.iter().all(|e| e.incomplete.is_none()));
    }
    let raw = recorded.iter().find(|c| c.exchanges.len() == 600).unwrap();
    for (i, get) in raw.by_name("GET").iter().enumerate() {
        assert_eq!(reply(get).data, format!("v{i}").as_bytes());
    }
    // --pipe ends with an ECHO of a marker it waits for.
    let pipe = recorded.iter().find(|c| c.exchanges.len() == 1001).unwrap();
    assert_eq!(reply(pipe.by_name("RPUSH")[999]).data, b"1000");
}

#[test]
fn redis_benchmark_every_reply_matched() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), 1 << 20);
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &relay.port.to_string()])
        .args(["-t", "get,set", "-n", "2000", "-P", "8", "-c", "4", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let recorded = relay.wait_for(1);
    let mut replied = std::collections::BTreeMap::<String, usize>::new();
    for conn in &recorded {
        assert!(conn.broken.is_none(), "{:?}", conn.broken);
        for exchange in &conn.exchanges {
            if exchange.incomplete.is_none() {
                *replied.entry(name(exchange)).or_default() += 1;
            }
        }
    }
    assert!(replied["SET"] >= 2000, "{replied:?}");
    assert!(replied["GET"] >= 2000, "{replied:?}");
}

/// A mock on Session and encode: canned answers, a miss for the rest.
fn answer(args: &[Vec<u8>], version: &mut RespVersion) -> Vec<u8> {
    let key = command_key(args);
    let bulk = |d: &[u8]| RespValue {
        kind: RespKind::BulkString as i32,
        data: d.to_vec(),
        ..RespValue::default()
    };
    let value = match (key.name.as_slice(), key.args.first().map(Vec::as_slice)) {
        (b"HELLO", Some(b"3")) => {
            *version = RespVersion::Resp3;
            RespValue {
                kind: RespKind::Map as i32,
                items: vec![
                    bulk(b"server"),
                    bulk(b"reprise"),
                    bulk(b"proto"),
                    RespValue {
                        kind: RespKind::Integer as i32,
                        data: b"3".to_vec(),
                        ..RespValue::default()
                    },
                ],
                ..RespValue::default()
            }
        }
        (b"PING", None) => RespValue {
            kind: RespKind::SimpleString as i32,
            data: b"PONG".to_vec(),
            ..RespValue::default()
        },
        (b"GET", Some(b"greeting")) => bulk(b"hello from the mock"),
        (b"ZSCORE", _) => RespValue {
            kind: RespKind::Double as i32,
            data: b"2.5".to_vec(),
            ..RespValue::default()
        },
        _ => return miss_reply(&key.to_string()),
    };
    encode(&value, *version)
}

async fn serve_mock(mut stream: TokioStream) {
    let mut session = Session::new(1 << 20);
    let mut version = RespVersion::Resp2;
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        let mut out = Vec::new();
        match session.feed(&buf[..n]) {
            Ok(commands) => {
                for command in commands {
                    out.extend(answer(&command.args, &mut version));
                }
            }
            Err(_) => out.extend_from_slice(b"-ERR Protocol error\r\n"),
        }
        if stream.write_all(&out).await.is_err() {
            break;
        }
    }
}

#[test]
fn a_mock_on_session_answers_redis_cli() {
    let runtime = Runtime::new().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_mock(stream));
        }
    });
    let out = cli(port, &[], b"PING\nGET greeting\nGET other\n");
    // redis-cli asks COMMAND DOCS first: a miss, printed as nothing.
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        [
            "PONG",
            "hello from the mock",
            "ERR reprise mock miss: GET other"
        ]
    );
    let out = cli(port, &["-3"], b"ZSCORE board me\n");
    assert_eq!(out.trim(), "2.5");
    let out = cli(port, &[], b"ZSCORE board me\n");
    assert_eq!(out.trim(), "2.5");
    // Inline, as telnet sends it.
    let mut raw = Raw::connect(port);
    raw.send(b"PING\r\nGET \"greeting\"\n");
    let replies = raw.read(2);
    assert_eq!(replies[1].data, b"hello from the mock");
}
