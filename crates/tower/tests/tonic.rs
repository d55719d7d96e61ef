//! The layers in tonic services: every gRPC call kind recorded by
//! RecordLayer on `Server::builder().layer(...)`, and a tonic service that
//! calls a tonic downstream through a `Channel` wrapped in the client-side
//! layer, recorded and then mocked with the downstream unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use reprise_model::{Direction, Exchange, HeaderList, Protocol, Role};
use reprise_testkit::EchoService;
use reprise_testkit::echo::echo_client::EchoClient;
use reprise_testkit::echo::echo_server::{Echo, EchoServer};
use reprise_testkit::echo::{Count, Note};
use reprise_tower::{Downstream, Mode, Rebox, Reprise};
use support::{config, read_tape, shut};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

fn note(text: &str, number: i64) -> Note {
    Note {
        text: text.into(),
        number,
        tags: vec![],
    }
}

/// Serves `service` on 127.0.0.1 with `reprise.inbound()`.
async fn serve_layered<S>(reprise: &Reprise, service: S) -> SocketAddr
where
    S: Echo,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let layer = reprise.inbound();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(layer)
            .add_service(EchoServer::new(service))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

async fn client(addr: SocketAddr) -> EchoClient<Channel> {
    EchoClient::connect(format!("http://{addr}")).await.unwrap()
}

fn messages(exchange: &Exchange, direction: Direction) -> Vec<Note> {
    exchange
        .messages
        .iter()
        .filter(|m| m.direction() == direction)
        .map(|m| prost::Message::decode(&m.data[..]).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_of_every_kind_are_recorded_with_status_and_trailers() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("echo.tape");
    let reprise = Reprise::start(config(Mode::Record, &tape)).unwrap();
    let addr = serve_layered(&reprise, EchoService::default()).await;
    let mut echo = client(addr).await;

    let unary = echo.unary(note("hi", 1)).await.unwrap().into_inner();
    assert_eq!(unary.text, "HI");
    let failed = echo.unary(note("fail", 0)).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let streamed: Vec<Note> = echo
        .server_stream(Count { n: 3, gap_ms: 5 })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(streamed.len(), 3);
    let outbound = tokio_stream::iter(vec![note("a", 1), note("b", 2), note("c", 3)]);
    let joined = echo.client_stream(outbound).await.unwrap().into_inner();
    assert_eq!((joined.text.as_str(), joined.number), ("a+b+c", 6));
    let outbound = tokio_stream::iter(vec![note("x", 1), note("y", 2)]);
    let doubled: Vec<Note> = echo
        .bidi(outbound)
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(doubled.len(), 2);

    let stats = shut(reprise).await;
    assert_eq!((stats.recorded, stats.dropped()), (5, 0), "{stats:?}");
    let exchanges = read_tape(&tape);
    let by_path = |path: &str| -> Vec<&Exchange> {
        exchanges
            .iter()
            .filter(|e| e.request.as_ref().unwrap().path == path)
            .collect()
    };
    for exchange in &exchanges {
        assert_eq!(exchange.protocol(), Protocol::Grpc);
        assert_eq!(exchange.role(), Role::Inbound);
        let source = exchange.source.as_ref().unwrap();
        assert_eq!(source.recorder, "tower");
        assert!(source.client_addr.starts_with("127.0.0.1:"), "{source:?}");
        let request = exchange.request.as_ref().unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.headers.header_str("content-type"),
            Some("application/grpc")
        );
        assert!(
            exchange.error.is_none() && exchange.flags.is_none(),
            "{exchange:?}"
        );
    }

    let unary = by_path("/reprise.test.v1.Echo/Unary");
    assert_eq!(unary.len(), 2);
    let ok = unary
        .iter()
        .find(|e| messages(e, Direction::Request)[0].text == "hi")
        .unwrap();
    assert_eq!(messages(ok, Direction::Response), [note("HI", 1)]);
    let response = ok.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.header_str("x-echo"), Some("unary"));
    assert_eq!(response.grpc.as_ref().unwrap().code, 0);
    assert_eq!(response.trailers.header_str("grpc-status"), Some("0"));
    let not_found = unary
        .iter()
        .find(|e| messages(e, Direction::Request)[0].text == "fail")
        .unwrap();
    let status = not_found.response.as_ref().unwrap().grpc.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (5, "no such note: fail")
    );

    let stream = by_path("/reprise.test.v1.Echo/ServerStream")[0];
    let sent = messages(stream, Direction::Response);
    assert_eq!(sent, streamed);
    let offsets: Vec<u64> = stream
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Response)
        .map(|m| m.offset_ns)
        .collect();
    // In order, and the last no earlier than the service sent it (two
    // 5 ms gaps after the call reached it).
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert!(offsets[2] >= 10_000_000, "{offsets:?}");

    let client_stream = by_path("/reprise.test.v1.Echo/ClientStream")[0];
    assert_eq!(messages(client_stream, Direction::Request).len(), 3);
    assert_eq!(messages(client_stream, Direction::Response), [joined]);
    let bidi = by_path("/reprise.test.v1.Echo/Bidi")[0];
    assert_eq!(
        messages(bidi, Direction::Request),
        [note("x", 1), note("y", 2)]
    );
    assert_eq!(messages(bidi, Direction::Response), doubled);
}

type NoteStream = Pin<Box<dyn Stream<Item = Result<Note, Status>> + Send>>;

/// A front service that serves each call by calling the echo service
/// downstream, through the client-side layer.
#[derive(Clone)]
struct Front {
    downstream: EchoClient<Downstream<Channel, Rebox>>,
}

#[tonic::async_trait]
impl Echo for Front {
    /// Asks the downstream twice (the text, then the text with "!"), and
    /// answers both joined.
    async fn unary(&self, request: Request<Note>) -> Result<Response<Note>, Status> {
        let note = request.into_inner();
        let mut downstream = self.downstream.clone();
        let first = downstream.unary(note.clone()).await?.into_inner();
        let second = downstream
            .unary(Note {
                text: format!("{}!", note.text),
                ..note
            })
            .await?
            .into_inner();
        Ok(Response::new(Note {
            text: format!("{} {}", first.text, second.text),
            number: first.number + second.number,
            tags: vec![],
        }))
    }

    type ServerStreamStream = NoteStream;

    /// The downstream's stream, passed on.
    async fn server_stream(&self, request: Request<Count>) -> Result<Response<NoteStream>, Status> {
        let stream = self
            .downstream
            .clone()
            .server_stream(request.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn client_stream(&self, _: Request<Streaming<Note>>) -> Result<Response<Note>, Status> {
        Err(Status::unimplemented("not in the front"))
    }

    type BidiStream = NoteStream;

    /// A conversation relayed one note at a time: each note goes to the
    /// downstream's bidi stream, and the next is read only once the
    /// downstream has answered it.
    async fn bidi(
        &self,
        request: Request<Streaming<Note>>,
    ) -> Result<Response<NoteStream>, Status> {
        let mut inbound = request.into_inner();
        let Some(first) = inbound.message().await? else {
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        };
        let (to_downstream, notes) = tokio::sync::mpsc::channel::<Note>(1);
        let gone = |_| Status::internal("the downstream stream closed");
        to_downstream.send(first).await.map_err(gone)?;
        let mut replies = self
            .downstream
            .clone()
            .bidi(ReceiverStream::new(notes))
            .await?
            .into_inner();
        let (answers, out) = tokio::sync::mpsc::channel::<Result<Note, Status>>(4);
        tokio::spawn(async move {
            loop {
                let reply = replies.message().await;
                let more = matches!(reply, Ok(Some(_)));
                if let Some(reply) = reply.transpose() {
                    let _ = answers.send(reply).await;
                }
                if !more {
                    return;
                }
                let Ok(Some(next)) = inbound.message().await else {
                    break;
                };
                if to_downstream.send(next).await.is_err() {
                    break;
                }
            }
            // The caller has finished: end the downstream stream and pass
            // on what it still says.
            drop(to_downstream);
            while let Some(reply) = replies.message().await.transpose() {
                let failed = reply.is_err();
                let _ = answers.send(reply).await;
                if failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

/// Says `notes` to `client`'s bidi stream one at a time, each after the
/// answer to the one before (an interactive client), then ends its side;
/// every answer, and the error that ended the stream if one did. Bounded:
/// a stream that stops answering fails the test.
async fn converse(
    client: &mut EchoClient<Channel>,
    replay_of: Option<&str>,
    notes: &[Note],
) -> Vec<Result<Note, Status>> {
    let talk = async {
        let (say, said) = tokio::sync::mpsc::channel::<Note>(1);
        say.send(notes[0].clone()).await.unwrap();
        let mut request = Request::new(ReceiverStream::new(said));
        if let Some(id) = replay_of {
            request
                .metadata_mut()
                .insert("x-reprise-replay", id.parse().unwrap());
        }
        let mut answers = Vec::new();
        let mut replies = match client.bidi(request).await {
            Ok(replies) => replies.into_inner(),
            Err(status) => return vec![Err(status)],
        };
        for next in &notes[1..] {
            match replies.message().await.transpose() {
                Some(Ok(note)) => answers.push(Ok(note)),
                Some(Err(status)) => {
                    answers.push(Err(status));
                    return answers;
                }
                None => return answers,
            }
            say.send(next.clone()).await.unwrap();
        }
        drop(say);
        while let Some(reply) = replies.message().await.transpose() {
            let failed = reply.is_err();
            answers.push(reply);
            if failed {
                break;
            }
        }
        answers
    };
    tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .expect("the conversation ends within 10 s")
}

/// The front, as a deployment of `reprise` would run it: `channel` to the
/// downstream called "echo:50051" in the recording.
async fn front(reprise: &Reprise, channel: Channel) -> SocketAddr {
    // A Channel takes tonic's body only: the layer boxes it back.
    let downstream = tower::ServiceBuilder::new()
        .layer(reprise.downstream("echo:50051").rebox())
        .service(channel);
    serve_layered(
        reprise,
        Front {
            downstream: EchoClient::new(downstream),
        },
    )
    .await
}

fn replaying<T>(message: T, id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-reprise-replay", id.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_downstream_is_recorded_then_mocked_message_by_message() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("front.tape");
    let echo_addr = reprise_testkit::start_echo().await;

    // Record: three calls at once, one streaming, one failing downstream.
    let reprise = Reprise::start(config(Mode::Record, &tape)).unwrap();
    let channel = Channel::from_shared(format!("http://{echo_addr}"))
        .unwrap()
        .connect_lazy();
    let front_addr = front(&reprise, channel).await;
    let mut front_client = client(front_addr).await;
    let (mut client_a, mut client_b) = (front_client.clone(), front_client.clone());
    let (a, b, stream) = tokio::join!(
        client_a.unary(note("a", 1)),
        client_b.unary(note("b", 2)),
        front_client.server_stream(Count { n: 3, gap_ms: 40 }),
    );
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    assert_eq!((a.text.as_str(), b.text.as_str()), ("A A!", "B B!"));
    let streamed: Vec<Note> = stream
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    let failed = client(front_addr)
        .await
        .unary(note("fail", 0))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let stats = shut(reprise).await;
    assert_eq!((stats.recorded, stats.dropped()), (4 + 6, 0), "{stats:?}");

    let exchanges = read_tape(&tape);
    let inbound: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.role() == Role::Inbound)
        .collect();
    let id_of = |text: &str| -> String {
        inbound
            .iter()
            .find(|e| {
                e.request.as_ref().unwrap().path.ends_with("/Unary")
                    && messages(e, Direction::Request)[0].text == text
            })
            .unwrap()
            .id_hex()
    };
    let stream_id = inbound
        .iter()
        .find(|e| e.request.as_ref().unwrap().path.ends_with("/ServerStream"))
        .unwrap()
        .id_hex();
    for parent in &inbound {
        let children: Vec<&Exchange> = exchanges
            .iter()
            .filter(|e| e.parent_id == parent.id)
            .collect();
        let unary = parent.request.as_ref().unwrap().path.ends_with("/Unary");
        let asked = if unary {
            messages(parent, Direction::Request)
        } else {
            vec![]
        };
        let expected = if asked.first().is_some_and(|n| n.text != "fail") {
            2
        } else {
            1
        };
        assert_eq!(children.len(), expected, "{}", parent.endpoint());
        for child in children {
            let request = child.request.as_ref().unwrap();
            assert_eq!(request.authority, "echo:50051");
            assert_eq!(child.protocol(), Protocol::Grpc);
            assert_eq!(child.trace_id, parent.trace_id);
            if let Some(asked) = asked.first() {
                let sent = messages(child, Direction::Request);
                assert!(
                    sent[0].text.starts_with(&asked.text),
                    "{sent:?} for {asked:?}"
                );
            }
        }
    }

    // Mock: the downstream address now refuses connections; every answer
    // must come from the tape.
    let reprise = Reprise::start(config(Mode::Mock, &tape)).unwrap();
    let nowhere = Channel::from_static("http://127.0.0.1:9").connect_lazy();
    let front_addr = front(&reprise, nowhere).await;
    let mut front_client = client(front_addr).await;
    let again_a = front_client
        .unary(replaying(note("a", 1), &id_of("a")))
        .await
        .unwrap()
        .into_inner();
    let again_b = front_client
        .unary(replaying(note("b", 2), &id_of("b")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again_a, again_b), (a, b));
    let started = Instant::now();
    let again_stream: Vec<Note> = front_client
        .server_stream(replaying(Count { n: 3, gap_ms: 40 }, &stream_id))
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(again_stream, streamed);
    // Released at their recorded times, relative to the first: not all at
    // once.
    let recorded_stream = exchanges
        .iter()
        .find(|e| e.is_downstream() && e.request.as_ref().unwrap().path.ends_with("/ServerStream"))
        .unwrap();
    let offsets: Vec<u64> = recorded_stream
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Response)
        .map(|m| m.offset_ns)
        .collect();
    // The echo service sent the last note 80 ms after it got the call.
    assert!(offsets[2] >= 80_000_000, "{offsets:?}");
    let span = Duration::from_nanos(offsets[2] - offsets[0]);
    assert!(
        started.elapsed() + Duration::from_millis(5) >= span,
        "{:?} for a recorded span of {span:?}",
        started.elapsed()
    );
    let failed_again = front_client
        .unary(replaying(note("fail", 0), &id_of("fail")))
        .await
        .unwrap_err();
    assert_eq!(
        (failed_again.code(), failed_again.message()),
        (failed.code(), failed.message())
    );
    // A call the recording never saw: UNAVAILABLE, saying why.
    let missed = front_client
        .unary(replaying(note("zzz", 1), &id_of("a")))
        .await
        .unwrap_err();
    assert_eq!(missed.code(), tonic::Code::Unavailable, "{missed:?}");
    assert!(
        missed.message().contains("reprise mock miss"),
        "{}",
        missed.message()
    );
    assert!(
        missed.message().contains("differs in body"),
        "{}",
        missed.message()
    );
    let report = reprise.mock_report().unwrap();
    assert_eq!(
        (report.served, report.missed),
        (2 + 2 + 1 + 1, 1),
        "{:?}",
        report.misses
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_bidi_stream_is_mocked_message_by_message() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("chat.tape");
    let echo_addr = reprise_testkit::start_echo().await;
    let notes = [note("hello", 1), note("how are you", 2), note("bye", 3)];

    // Record: each note reaches the downstream only after the answer to
    // the one before.
    let reprise = Reprise::start(config(Mode::Record, &tape)).unwrap();
    let channel = Channel::from_shared(format!("http://{echo_addr}"))
        .unwrap()
        .connect_lazy();
    let front_addr = front(&reprise, channel).await;
    let recorded: Vec<Note> = converse(&mut client(front_addr).await, None, &notes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recorded.iter().map(|n| n.number).collect::<Vec<_>>(),
        [2, 4, 6],
        "the echo doubles each number"
    );
    let stats = shut(reprise).await;
    assert_eq!((stats.recorded, stats.dropped()), (2, 0), "{stats:?}");
    let exchanges = read_tape(&tape);
    let inbound = exchanges
        .iter()
        .find(|e| e.role() == Role::Inbound)
        .unwrap();
    let child = exchanges.iter().find(|e| e.is_downstream()).unwrap();
    assert_eq!(child.parent_id, inbound.id);
    // Recorded interleaved: each answer before the next note.
    let order: Vec<Direction> = {
        let mut messages: Vec<_> = child.messages.iter().collect();
        messages.sort_by_key(|m| m.offset_ns);
        messages.iter().map(|m| m.direction()).collect()
    };
    use Direction::{Request as Rq, Response as Rs};
    assert_eq!(order, [Rq, Rs, Rq, Rs, Rq, Rs], "{order:?}");

    // Mock: the downstream is unreachable; the conversation goes as
    // recorded, each answer coming as its note arrives.
    let reprise = Reprise::start(config(Mode::Mock, &tape)).unwrap();
    let nowhere = Channel::from_static("http://127.0.0.1:9").connect_lazy();
    let front_addr = front(&reprise, nowhere).await;
    let mut front_client = client(front_addr).await;
    let id = inbound.id_hex();
    let again: Vec<Note> = converse(&mut front_client, Some(&id), &notes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(again, recorded);
    // Again: each inbound call has the recorded calls to itself.
    let twice: Vec<Note> = converse(&mut front_client, Some(&id), &notes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(twice, recorded);
    let report = reprise.mock_report().unwrap();
    assert_eq!(
        (report.served, report.missed),
        (2, 0),
        "{:?}",
        report.misses
    );

    // A conversation that leaves the recording at its second note: the
    // first answer comes, then UNAVAILABLE naming the note.
    let reprise = Reprise::start(config(Mode::Mock, &tape)).unwrap();
    let front_addr = front(
        &reprise,
        Channel::from_static("http://127.0.0.1:9").connect_lazy(),
    )
    .await;
    let other = [note("hello", 1), note("something else", 2), note("bye", 3)];
    let answers = converse(&mut client(front_addr).await, Some(&id), &other).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].as_ref().unwrap(), &recorded[0]);
    let status = answers[1].as_ref().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("reprise mock miss"),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("request message 2 is not the recorded one"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(&child.id_hex()),
        "{}",
        status.message()
    );
    let report = reprise.mock_report().unwrap();
    assert_eq!(
        (report.served, report.missed),
        (1, 1),
        "{:?}",
        report.misses
    );
}
