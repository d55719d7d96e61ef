//! The replay's HTTP/2 calls, made with the `h2` crate directly.
//!
//! hyper's HTTP/2 client sits on the same `h2` connection but adds, for
//! every request, a dispatch channel to its connection task, a spawned
//! task that waits for the response, and a body wrapper on each side
//! (callgrind: about 45,000 instructions a call with hyper, 2.3 times
//! h2load's). Here the worker opens the stream, sends the body (gRPC
//! messages at their recorded offsets, then the trailers) and reads the
//! answer in its own task, releasing flow-control capacity as it reads.
//! Each connection still has a task of its own that drives its frames.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::Request;
use reprise_model::grpc::Deframer;
use reprise_model::{Direction, ErrorKind};
use reprise_net::grpc_status;
use tokio::time::Instant;

use crate::call::Call;
use crate::client::{Answer, Failure, Keep, Stream, nanos};

/// Opens an HTTP/2 connection over `io` and starts its task.
pub async fn open(io: Stream) -> Result<SendRequest<Bytes>, Failure> {
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| classify(&e, false))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `call` on `sender` (ready for a new stream) and reads the whole
/// answer. The request body goes out while the answer comes in, so a
/// bidi stream's answers arrive as it runs; once the answer has ended, a
/// body still being sent is dropped (the stream is reset).
pub async fn call(
    sender: &mut SendRequest<Bytes>,
    call: &Call,
    speed: Option<f64>,
    keep: Keep,
    sent: Instant,
) -> Result<Answer, Failure> {
    let mut request = Request::new(());
    *request.method_mut() = call.method.clone();
    *request.uri_mut() = call.uri.clone();
    *request.headers_mut() = call.headers.clone();
    *request.version_mut() = http::Version::HTTP_2;
    let bodiless = call.body.is_empty() && call.messages.is_empty() && call.trailers.is_none();
    let (response, stream) = sender
        .send_request(request, bodiless)
        .map_err(|e| classify(&e, false))?;
    let answer = async {
        let response = response.await.map_err(|e| classify(&e, false))?;
        read_response(response, call.grpc, keep, sent).await
    };
    if bodiless {
        return answer.await;
    }
    let mut body = pin!(send_body(stream, call, speed));
    let mut answer = pin!(answer);
    let mut body_done = false;
    std::future::poll_fn(|cx| {
        // A body that fails (the target reset the stream) ends quietly:
        // what the answer says is the call's outcome.
        if !body_done && body.as_mut().poll(cx).is_ready() {
            body_done = true;
        }
        answer.as_mut().poll(cx)
    })
    .await
}

/// The request body: the recorded bytes, or the gRPC messages each at its
/// recorded offset from the start of the call (divided by `speed`; back
/// to back without one), then the trailers.
async fn send_body(
    mut stream: h2::SendStream<Bytes>,
    call: &Call,
    speed: Option<f64>,
) -> Result<(), h2::Error> {
    let start = Instant::now();
    let last = call.messages.len();
    let ends = call.trailers.is_none();
    if call.messages.is_empty() {
        send_data(&mut stream, call.body.clone(), ends).await?;
    }
    for (i, (offset_ns, message)) in call.messages.iter().enumerate() {
        if let Some(speed) = speed {
            let due = start + Duration::from_nanos((*offset_ns as f64 / speed) as u64);
            tokio::time::sleep_until(due).await;
        }
        send_data(&mut stream, message.clone(), ends && i + 1 == last).await?;
    }
    if let Some(trailers) = &call.trailers {
        stream.send_trailers(trailers.clone())?;
    }
    Ok(())
}

/// Sends `data` as the target's flow-control windows allow; `end` ends
/// the stream with it.
async fn send_data(
    stream: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        return if end {
            stream.send_data(data, true)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            // The stream has closed: the answer tells what happened.
            None => return Ok(()),
        };
        if granted == 0 {
            // Nothing granted yet: let the connection run before asking again.
            tokio::task::yield_now().await;
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// Reads the whole answer whose head has just arrived, giving the
/// flow-control capacity back as the body is read.
async fn read_response(
    response: http::Response<h2::RecvStream>,
    grpc: bool,
    keep: Keep,
    sent: Instant,
) -> Result<Answer, Failure> {
    // Only the results tape shows it: no clock read otherwise.
    let head_after = if keep.messages {
        sent.elapsed()
    } else {
        Duration::ZERO
    };
    let (parts, mut body) = response.into_parts();
    let mut kept = BytesMut::new();
    let mut body_size = 0u64;
    let mut deframer =
        (grpc && keep.messages).then(|| Deframer::new(Direction::Response, keep.body));
    let cut = |e: h2::Error| classify(&e, true);
    while let Some(data) = body.data().await {
        let data = data.map_err(cut)?;
        let _ = body.flow_control().release_capacity(data.len());
        body_size += data.len() as u64;
        if let Some(deframer) = deframer.as_mut() {
            deframer.push(nanos(sent.elapsed()), &data);
        } else if kept.len() < keep.body {
            let room = (keep.body - kept.len()).min(data.len());
            kept.extend_from_slice(&data[..room]);
        }
    }
    let trailers = body.trailers().await.map_err(cut)?;
    let grpc_status = trailers
        .as_ref()
        .and_then(grpc_status)
        .or_else(|| grpc_status(&parts.headers));
    let messages = deframer.map_or_else(Vec::new, |d| d.finish(nanos(sent.elapsed())).0);
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: kept.freeze(),
        body_size,
        trailers,
        grpc: grpc_status,
        messages,
        head_after,
    })
}

/// Whether a failure means the connection itself is gone (a new stream
/// on it would fail too), rather than only this stream.
pub fn connection_gone(error: &h2::Error) -> bool {
    error.is_io() || error.is_go_away() || (error.is_library() && !error.is_reset())
}

/// Sorts an `h2` error into the kinds the report counts.
pub fn classify(error: &h2::Error, after_head: bool) -> Failure {
    use h2::Reason;
    let kind = if let Some(io) = error.get_io() {
        reprise_model::error::io_failure(io).unwrap_or(ErrorKind::Other)
    } else {
        match error.reason() {
            Some(
                Reason::PROTOCOL_ERROR
                | Reason::FRAME_SIZE_ERROR
                | Reason::COMPRESSION_ERROR
                | Reason::FLOW_CONTROL_ERROR
                | Reason::SETTINGS_TIMEOUT,
            ) => ErrorKind::Protocol,
            Some(_) => ErrorKind::Reset,
            None if error.is_library() => ErrorKind::Protocol,
            None => ErrorKind::Other,
        }
    };
    Failure {
        kind,
        message: format!("HTTP/2: {}", reprise_model::error::one_line(error)),
        after_head,
    }
}
