//! The jail, built for real (these tests run as root, as CI does): a
//! command inside reaches the allowed ports and nothing else, and every
//! attempt is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use reprise_sandbox::{Sandbox, SandboxOptions};
use support::{python, run};

/// A port for the sandbox's own listeners: any is free inside a new
/// network namespace.
const ALLOWED: u16 = 18080;

fn sandbox() -> Sandbox {
    Sandbox::create(
        SandboxOptions::default()
            .allow_port(ALLOWED)
            .dns_name("payments.internal"),
    )
    .unwrap()
}

#[test]
fn a_connection_to_another_address_is_reported_with_its_destination_and_reaches_nothing() {
    // A real listener on the host's loopback: the sandboxed command aims at
    // it and must not arrive.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let host_port = host.local_addr().unwrap().port();
    let sandbox = sandbox();

    let script = format!(
        r#"
import socket
for address in [("10.1.2.3", 5432), ("127.0.0.1", {host_port})]:
    c = socket.create_connection(address, timeout=5)
    print("closed" if c.recv(10) == b"" else "data")
c = socket.socket(socket.AF_INET6)
c.settimeout(5)
c.connect(("2001:db8::7", 443))
print("closed" if c.recv(10) == b"" else "data")
"#
    );
    let (status, lines) = run(&sandbox, python(&script));
    assert!(status.success(), "{status}: {lines:?}");
    // Each connection was answered by the reporter, which closed it.
    assert_eq!(lines, ["closed", "closed", "closed"]);

    let escapes = sandbox.escapes().unwrap();
    let destinations: Vec<SocketAddr> = escapes.tcp.iter().map(|e| e.destination).collect();
    assert_eq!(
        destinations,
        [
            "10.1.2.3:5432".parse().unwrap(),
            SocketAddr::from(([127, 0, 0, 1], host_port)),
            "[2001:db8::7]:443".parse().unwrap(),
        ]
    );
    assert_eq!(
        escapes.messages()[0],
        "the service tried to reach 10.1.2.3:5432 directly"
    );
    let reached = host.accept();
    assert_eq!(
        reached.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the host's listener was reached"
    );
}

#[test]
fn attempts_still_queued_when_the_service_exits_are_all_reported() {
    let sandbox = sandbox();
    // Twenty connections the service never waits on: the kernel completes
    // them at once, and the service is gone before the reporter may have
    // taken them from its queue.
    let script = r#"
import socket
held = [socket.create_connection(("10.1.2.%d" % i, 5432), timeout=5) for i in range(20)]
print(len(held))
"#;
    let (status, lines) = run(&sandbox, python(script));
    assert!(status.success(), "{status}: {lines:?}");
    let escapes = sandbox.escapes().unwrap();
    let destinations: Vec<String> = escapes
        .tcp
        .iter()
        .map(|e| e.destination.to_string())
        .collect();
    let want: Vec<String> = (0..20).map(|i| format!("10.1.2.{i}:5432")).collect();
    assert_eq!(destinations, want);
}

#[test]
fn an_allowed_port_reaches_a_listener_opened_inside_ipv4_and_ipv6() {
    let sandbox = sandbox();
    let v4 = sandbox
        .listen_tcp(SocketAddr::from(([127, 0, 0, 1], ALLOWED)))
        .unwrap();
    let v6 = sandbox
        .listen_tcp(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, ALLOWED)))
        .unwrap();
    let serve = |listener: TcpListener| {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            stream.write_all(b"pong\n").unwrap();
            line
        })
    };
    let (v4, v6) = (serve(v4), serve(v6));

    let script = format!(
        r#"
import socket
for address in [("127.0.0.1", {ALLOWED}), ("::1", {ALLOWED})]:
    c = socket.create_connection(address, timeout=5)
    c.sendall(b"ping from %s\n" % address[0].encode())
    print(c.makefile().readline().strip())
"#
    );
    let (status, lines) = run(&sandbox, python(&script));
    assert!(status.success(), "{status}: {lines:?}");
    assert_eq!(lines, ["pong", "pong"]);
    assert_eq!(v4.join().unwrap(), "ping from 127.0.0.1\n");
    assert_eq!(v6.join().unwrap(), "ping from ::1\n");
    assert!(sandbox.escapes().unwrap().is_empty());
}

#[test]
fn udp_is_dropped_and_counted() {
    let sandbox = sandbox();
    let script = r#"
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    try:
        u.sendto(b"metric:1|c", ("10.9.9.9", 8125))
        print("sent")
    except PermissionError:
        print("dropped")
"#;
    let (status, lines) = run(&sandbox, python(script));
    assert!(status.success(), "{status}: {lines:?}");
    assert_eq!(lines, ["dropped", "dropped", "dropped"]);
    let escapes = sandbox.escapes().unwrap();
    assert_eq!(escapes.udp_dropped, 3);
    assert!(escapes.tcp.is_empty() && escapes.dns.is_empty());
}

#[test]
fn recorded_names_resolve_to_loopback_and_other_lookups_are_reported() {
    let sandbox = sandbox();
    let script = r#"
import socket
print(socket.gethostbyname("payments.internal"))
print(socket.gethostbyname("localhost"))
try:
    socket.gethostbyname("db.example.com")
    print("resolved")
except socket.gaierror:
    print("unknown")
print(open("/etc/resolv.conf").read().strip())
# Both families asked (A and AAAA): only the IPv4 loopback comes back.
print(sorted({info[4][0] for info in socket.getaddrinfo("payments.internal", 80)}))
# DNS over TCP, as a client does when an answer is truncated: a query
# for payments.internal (A), length-prefixed.
import struct
question = b"".join(bytes([len(l)]) + l for l in [b"payments", b"internal"]) + b"\0"
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
t = socket.create_connection(("127.0.0.1", 53), timeout=5)
t.sendall(struct.pack(">H", len(query)) + query)
length = struct.unpack(">H", t.recv(2))[0]
answer = b""
while len(answer) < length:
    answer += t.recv(length - len(answer))
ident, flags, _, answers = struct.unpack(">HHHH", answer[:8])
print(hex(ident), flags & 0xF, answers, answer[-4:] == bytes([127, 0, 0, 1]))
"#;
    let (status, lines) = run(&sandbox, python(script));
    assert!(status.success(), "{status}: {lines:?}");
    assert_eq!(
        lines,
        [
            "127.0.0.1",
            "127.0.0.1",
            "unknown",
            "nameserver 127.0.0.1",
            "['127.0.0.1']",
            "0x1234 0 1 True",
        ]
    );
    let escapes = sandbox.escapes().unwrap();
    assert_eq!(escapes.dns.len(), 1, "{escapes:?}");
    assert_eq!(escapes.dns[0].name, "db.example.com");
    assert_eq!(escapes.dns[0].record_type, "A");
    // The question went over UDP to the stub: nothing was dropped.
    assert_eq!(escapes.udp_dropped, 0);
}

#[test]
fn the_hosts_unix_sockets_are_out_of_reach() {
    // Real listeners on the host: one under /run (where PostgreSQL and
    // Redis put theirs), one directly in /tmp (where some builds do).
    let run_dir = std::path::PathBuf::from(format!("/run/reprise-test-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).unwrap();
    let under_run = run_dir.join("x.sock");
    let _ = std::fs::remove_file(&under_run);
    let run_listener = UnixListener::bind(&under_run).unwrap();
    let in_tmp = std::path::PathBuf::from(format!("/tmp/.s.PGSQL.reprise-{}", std::process::id()));
    let _ = std::fs::remove_file(&in_tmp);
    let tmp_listener = UnixListener::bind(&in_tmp).unwrap();
    for listener in [&run_listener, &tmp_listener] {
        listener.set_nonblocking(true).unwrap();
    }
    // They are real: the host reaches them.
    std::os::unix::net::UnixStream::connect(&under_run).unwrap();
    run_listener.accept().unwrap();

    let sandbox = sandbox();
    assert!(sandbox.hidden().folders.contains(&"/run".into()));
    assert!(sandbox.hidden().sockets.contains(&in_tmp));
    let script = format!(
        r#"
import socket
for path in ["{}", "{}"]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print("connected")
    except OSError as e:
        print(type(e).__name__)
"#,
        under_run.display(),
        in_tmp.display()
    );
    let (status, lines) = run(&sandbox, python(&script));
    assert!(status.success(), "{status}: {lines:?}");
    assert_eq!(lines, ["FileNotFoundError", "ConnectionRefusedError"]);
    for listener in [&run_listener, &tmp_listener] {
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    }
    drop(sandbox);
    let _ = std::fs::remove_file(&in_tmp);
    let _ = std::fs::remove_dir_all(&run_dir);
}

#[test]
fn a_thread_inside_reaches_the_service_and_the_host_does_not() {
    let sandbox = sandbox();
    let script = format!(
        r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {ALLOWED}))
s.listen()
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"hello from the service\n")
c.close()
"#
    );
    let mut service = support::start(&sandbox, python(&script));
    service
        .wait_for_port(ALLOWED, Duration::from_secs(10))
        .unwrap();
    // wait_for_port's own probe took the one accept: start another.
    let status = service.wait(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let mut second = support::start(&sandbox, python(&script));
    support::eventually("the service listens", 10, || {
        second.last_lines() == ["listening"]
    });
    // The host's loopback is another network: its connection to the same
    // port is refused (or reaches whatever the host runs there), never the
    // service, which still waits for its one connection.
    let from_host = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], ALLOWED)),
        Duration::from_secs(1),
    );
    if let Ok(stream) = from_host {
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        assert_ne!(line, "hello from the service\n");
    }
    let greeting = sandbox
        .spawn_thread("client", move || {
            let stream = std::net::TcpStream::connect(("127.0.0.1", ALLOWED)).unwrap();
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).unwrap();
            line
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(greeting, "hello from the service\n");
    let status = second.wait(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(sandbox.escapes().unwrap().is_empty());
}

#[test]
fn a_tokio_runtime_built_on_a_sandbox_thread_has_its_workers_inside() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sandbox = sandbox();
    // The mock's side: a listener bound inside, served by a plain thread.
    let listener = sandbox
        .listen_tcp(SocketAddr::from(([127, 0, 0, 1], ALLOWED)))
        .unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..8 {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"inside").unwrap();
        }
    });
    // The replay's side: eight connections from the workers of a runtime
    // built on a sandbox thread. Outside, 127.0.0.1:ALLOWED is the host's
    // and nothing (or something else) answers there.
    let answers = sandbox
        .spawn_thread("runtime", || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let calls = (0..8).map(|_| {
                    tokio::spawn(async {
                        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", ALLOWED))
                            .await
                            .unwrap();
                        let mut answer = String::new();
                        stream.read_to_string(&mut answer).await.unwrap();
                        stream.shutdown().await.unwrap();
                        answer
                    })
                });
                let mut answers = Vec::new();
                for call in calls.collect::<Vec<_>>() {
                    answers.push(call.await.unwrap());
                }
                answers
            })
        })
        .unwrap()
        .join()
        .unwrap();
    server.join().unwrap();
    assert_eq!(answers, vec!["inside"; 8]);
    assert!(sandbox.escapes().unwrap().is_empty());
}

#[test]
fn a_relative_folder_to_hide_is_refused_before_anything_is_built() {
    let error = Sandbox::create(SandboxOptions::default().hide("run/postgresql")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "a folder the sandbox hides must be an absolute path, not run/postgresql"
    );
}
