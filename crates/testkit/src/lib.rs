//! A tonic gRPC service for reprise's own tests, with one method of each
//! streaming kind (see `proto/echo.proto`), served on 127.0.0.1; in
//! [`target`], a replay target that records every request it receives;
//! [`hello_json`], the 1 KiB body the benchmarks serve; and real
//! [`postgres`] and [`redis`] servers for the database tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a broken test setup

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

mod child;
pub mod full_disk;
pub mod postgres;
pub mod redis;
pub mod target;

/// A JSON document of exactly 1024 bytes saying `message`, padded: the
/// body the benchmarks' services answer.
pub fn hello_json(message: &str) -> bytes::Bytes {
    let head = format!(r#"{{"message":"{message}","items":[0,1,2,3,4,5,6,7],"pad":""#);
    let tail = r#""}"#;
    let pad = "x".repeat(1024usize.saturating_sub(head.len() + tail.len()));
    let text = format!("{head}{pad}{tail}");
    assert_eq!(
        text.len(),
        1024,
        "a message of {} bytes is too long",
        message.len()
    );
    bytes::Bytes::from(text)
}

/// The generated types and stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod echo {
    tonic::include_proto!("reprise.test.v1");
}

use echo::echo_server::{Echo, EchoServer};
use echo::{Count, Note};

type NoteStream = Pin<Box<dyn Stream<Item = Result<Note, Status>> + Send>>;

/// The service.
#[derive(Debug, Default, Clone)]
pub struct EchoService {
    /// Added to the number of every unary answer: a second "build" of
    /// the service whose answers differ in one field (compare tests).
    pub unary_offset: i64,
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<Note>) -> Result<Response<Note>, Status> {
        let note = request.into_inner();
        if note.text == "fail" {
            return Err(Status::not_found("no such note: fail"));
        }
        let mut response = Response::new(Note {
            text: note.text.to_uppercase(),
            number: note.number + self.unary_offset,
            ..note
        });
        response
            .metadata_mut()
            .insert("x-echo", "unary".parse().unwrap());
        Ok(response)
    }

    type ServerStreamStream = NoteStream;

    async fn server_stream(&self, request: Request<Count>) -> Result<Response<NoteStream>, Status> {
        let Count { n, gap_ms } = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for i in 0..n {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(u64::from(gap_ms))).await;
                }
                let note = Note {
                    text: format!("note {i}"),
                    number: i64::from(i),
                    tags: vec![],
                };
                if tx.send(Ok(note)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<Note>>,
    ) -> Result<Response<Note>, Status> {
        let mut stream = request.into_inner();
        let mut texts = Vec::new();
        let mut sum = 0;
        while let Some(note) = stream.next().await {
            let note = note?;
            texts.push(note.text);
            sum += note.number;
        }
        Ok(Response::new(Note {
            text: texts.join("+"),
            number: sum,
            tags: vec![],
        }))
    }

    type BidiStream = NoteStream;

    async fn bidi(
        &self,
        request: Request<Streaming<Note>>,
    ) -> Result<Response<NoteStream>, Status> {
        let stream = request.into_inner();
        let out = stream.map(|note| {
            note.map(|n| Note {
                number: n.number * 2,
                ..n
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// Starts the service on 127.0.0.1 (a free port) and returns its address.
pub async fn start_echo() -> SocketAddr {
    start_echo_service(EchoService::default()).await
}

/// The service's schema as an encoded `FileDescriptorSet`.
pub const ECHO_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echo.fds"));

/// Starts `service` on 127.0.0.1 (a free port), with gRPC server
/// reflection (v1), and returns its address.
pub async fn start_echo_service(service: EchoService) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            // As services in production run: without it, Nagle's algorithm
            // holds a streamed message back until the previous one is
            // acknowledged (40 ms of delayed ACK on loopback), which
            // shifts the recorded offsets of streamed messages.
            .tcp_nodelay(true)
            .add_service(EchoServer::new(service))
            .add_service(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(ECHO_DESCRIPTOR_SET)
                    .build_v1()
                    .unwrap(),
            )
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

/// A client of the service at `addr` (h2c).
pub async fn echo_client(
    addr: SocketAddr,
) -> echo::echo_client::EchoClient<tonic::transport::Channel> {
    echo::echo_client::EchoClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}
