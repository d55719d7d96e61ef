//! The recorder's side: a connection's two byte streams cut into
//! exchanges.

use std::collections::VecDeque;

use reprise_model::{Header, SqlStartup};

use super::batch::{Batch, Names};
use super::client::{ClientEvent, ClientReader, Extended};
use super::draft::{BatchDraft, Draft, Kind, Outcome, SimpleDraft, StartupDraft};
use super::error::{PgError, Side};
use super::frame::{Frame, Framer, HEAD_CAP, Mode, Times};
use super::messages::{Backend, backend};
use super::startup::FirstPacket;
use crate::DbExchange;

/// How a [`Conversation`] keeps what it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// Bytes of rows kept per statement; rows beyond are counted
    /// (`rows_size`) but not kept (`rows_truncated`). A single message
    /// larger than this (plus a small margin) is not buffered: its head is
    /// read and the rest passed over.
    pub max_body: u64,
    /// The client's connection to the recorder is TLS (the recorder ended
    /// it and feeds the decrypted bytes).
    pub tls: bool,
}

/// Cuts one PostgreSQL connection into [`DbExchange`]s.
///
/// Feed the client's bytes with [`client`](Self::client) and the server's
/// with [`server`](Self::server), in any chunks, each direction in order,
/// and a client's bytes before the server's answer to them (feed a copy
/// before passing the bytes on), from the connection's first byte (the
/// start-up packet the recorder looked at with
/// [`first_packet`](super::first_packet) included; after a TLS handshake
/// the recorder ended, the decrypted bytes). Completed exchanges come out of
/// [`take`](Self::take), in order; [`close`](Self::close) ends the
/// connection and returns what was still open, marked incomplete.
///
/// Exchanges: the start-up (StartupMessage to the first ReadyForQuery);
/// each simple Query; each extended-query batch up to the ReadyForQuery
/// answering its Sync; a FunctionCall (not mockable). A simple query with
/// several statements gives one statement per result; each gets its own
/// SQL when the text splits at top-level semicolons into at least as many
/// pieces as results, else the first gets the whole text.
///
/// Password, SASL and GSSAPI messages are never read beyond a SASL
/// mechanism's name. On a stream that stops making sense the conversation
/// gives up ([`broken`](Self::broken)); the recorder keeps relaying.
#[derive(Debug)]
pub struct Conversation {
    client: ClientReader,
    server: Framer,
    state: State,
}

#[derive(Debug)]
struct State {
    options: PgOptions,
    names: Names,
    queue: VecDeque<Draft>,
    done: Vec<DbExchange>,
    broken: Option<PgError>,
    /// The client asked for TLS ('S') or GSSAPI encryption ('G'): the
    /// server's next byte answers it.
    awaiting: Option<u8>,
    tls: bool,
}

impl Conversation {
    /// A conversation for a new connection.
    pub fn new(options: PgOptions) -> Self {
        let limit = usize::try_from(options.max_body)
            .unwrap_or(usize::MAX)
            .saturating_add(HEAD_CAP)
            .min(1 << 30);
        Conversation {
            client: ClientReader::new(limit),
            server: Framer::new(Side::Server, Mode::Typed, limit),
            state: State {
                options,
                names: Names::default(),
                queue: VecDeque::new(),
                done: Vec::new(),
                broken: None,
                awaiting: None,
                tls: options.tls,
            },
        }
    }

    /// Bytes the client sent, seen at `at_ns`.
    pub fn client(&mut self, bytes: &[u8], at_ns: u64) {
        if self.state.broken.is_some() {
            return;
        }
        let state = &mut self.state;
        if let Err(e) = self
            .client
            .feed(bytes, at_ns, |event, times| state.on_client(event, times))
        {
            self.state.broken = Some(e);
        }
    }

    /// Bytes the server sent, seen at `at_ns`.
    pub fn server(&mut self, bytes: &[u8], at_ns: u64) {
        if self.state.broken.is_some() {
            return;
        }
        if self.state.awaiting.is_some() && !self.server.mid_frame() {
            self.server.set_mode(Mode::Byte);
        }
        let state = &mut self.state;
        if let Err(e) = self.server.feed(bytes, at_ns, &mut |frame, times| {
            state.on_server(frame, times)
        }) {
            self.state.broken = Some(e);
        }
    }

    /// The exchanges completed since the last call, in order.
    pub fn take(&mut self) -> Vec<DbExchange> {
        std::mem::take(&mut self.state.done)
    }

    /// The connection ended at `at_ns` (`reason`: why, e.g. "reset by
    /// peer"): the completed exchanges, then those still open with
    /// `incomplete` set.
    pub fn close(&mut self, at_ns: u64, reason: Option<&str>) -> Vec<DbExchange> {
        let mut out = self.take();
        let default = match (&self.state.broken, self.server.mid_frame()) {
            (Some(e), _) => format!("stopped following the connection: {e}"),
            (None, true) => "connection closed mid-message".to_owned(),
            (None, false) => "connection closed before the answer completed".to_owned(),
        };
        for draft in self.state.queue.drain(..) {
            let why = reason.map_or_else(|| default.clone(), str::to_owned);
            out.push(draft.finish(at_ns, None, Some(why)));
        }
        out
    }

    /// Why the conversation stopped cutting, when it did.
    pub fn broken(&self) -> Option<&PgError> {
        self.state.broken.as_ref()
    }
}

impl State {
    fn on_client(&mut self, event: ClientEvent, times: Times) -> Result<(), PgError> {
        let at = times.start_ns;
        match event {
            ClientEvent::First(FirstPacket::SslRequest) => self.awaiting = Some(b'S'),
            ClientEvent::First(FirstPacket::GssEncRequest) => self.awaiting = Some(b'G'),
            ClientEvent::First(FirstPacket::CancelRequest { .. }) => {}
            ClientEvent::First(FirstPacket::Startup {
                version,
                parameters,
            }) => {
                let startup = SqlStartup {
                    protocol_version: version,
                    parameters: parameters
                        .into_iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("password"))
                        .map(|(name, value)| Header {
                            name,
                            value: value.into_bytes(),
                        })
                        .collect(),
                    tls: self.tls,
                    ..SqlStartup::default()
                };
                let kind = Kind::Startup(StartupDraft {
                    startup,
                    ..StartupDraft::default()
                });
                self.queue.push_back(Draft::new(at, kind));
            }
            ClientEvent::Password { sasl_mechanism } => {
                if let Some(Kind::Startup(s)) = self.queue.back_mut().map(|d| &mut d.kind)
                    && s.sasl_chosen.is_none()
                {
                    s.sasl_chosen = sasl_mechanism;
                }
            }
            ClientEvent::Query { sql, cut } => {
                let mut draft = Draft::new(
                    at,
                    Kind::Simple(SimpleDraft {
                        sql,
                        ..SimpleDraft::default()
                    }),
                );
                if cut {
                    draft.not_mockable = Some("query larger than the size cap".to_owned());
                }
                self.queue.push_back(draft);
            }
            ClientEvent::Extended(msg) => self.on_extended(msg, at),
            ClientEvent::FunctionCall => self.queue.push_back(Draft::new(at, Kind::Function)),
            ClientEvent::Copy | ClientEvent::Terminate => {}
        }
        Ok(())
    }

    fn on_extended(&mut self, msg: Extended, at: u64) {
        let open = matches!(
            self.queue.back().map(|d| &d.kind),
            Some(Kind::Batch(BatchDraft { synced: false, .. }))
        );
        if !open {
            if matches!(msg, Extended::Flush) {
                return;
            }
            self.queue.push_back(Draft::new(
                at,
                Kind::Batch(BatchDraft {
                    batch: Batch::default(),
                    ..BatchDraft::default()
                }),
            ));
        }
        let Some(draft) = self.queue.back_mut() else {
            return;
        };
        let Kind::Batch(b) = &mut draft.kind else {
            return;
        };
        match msg {
            Extended::Sync => b.synced = true,
            Extended::Flush => {}
            msg => {
                b.batch.add(msg, &mut self.names);
                if b.batch.cut && draft.not_mockable.is_none() {
                    draft.not_mockable = Some("a message larger than the size cap".to_owned());
                }
                if b.batch.overflow && draft.not_mockable.is_none() {
                    draft.not_mockable =
                        Some("more messages in one batch than are kept".to_owned());
                }
            }
        }
    }

    fn on_server(&mut self, frame: Frame<'_>, times: Times) -> Result<Mode, PgError> {
        match frame {
            Frame::Byte(answer) => {
                let asked = self.awaiting.take();
                match (asked, answer) {
                    (Some(b'S'), b'S') => self.tls = true,
                    (Some(b'G'), b'G') => return Err(PgError::Unsupported("GSSAPI encryption")),
                    (_, b'N') => {}
                    _ => {
                        return Err(PgError::Unexpected {
                            side: Side::Server,
                            kind: char::from(answer),
                            during: "answering SSLRequest or GSSENCRequest",
                        });
                    }
                }
            }
            Frame::Typed { kind, body } => {
                let msg = backend(kind, body)?;
                self.on_backend(kind, msg, body.len() as u64 + 5, times)?;
            }
            Frame::Oversized { kind, len, .. } => {
                if let Some(front) = self.queue.front_mut() {
                    if kind == b'D' {
                        front.oversized_row(len + 5);
                    } else if front.not_mockable.is_none() {
                        front.not_mockable = Some(format!(
                            "a '{}' message larger than the size cap",
                            char::from(kind)
                        ));
                    }
                }
            }
            Frame::Untyped { .. } => {}
        }
        Ok(Mode::Typed)
    }

    fn on_backend(
        &mut self,
        kind: u8,
        msg: Backend<'_>,
        len: u64,
        times: Times,
    ) -> Result<(), PgError> {
        let Some(front) = self.queue.front_mut() else {
            // Asynchronous messages may come with nothing pending (a
            // notification, a parameter change, the FATAL of a shutdown).
            return match kind {
                b'N' | b'S' | b'A' | b'E' => Ok(()),
                _ => Err(PgError::Unexpected {
                    side: Side::Server,
                    kind: char::from(kind),
                    during: "with no request pending",
                }),
            };
        };
        // Not part of any answer: a NOTIFY, and a SET's new parameter value
        // after the start-up.
        let startup = matches!(front.kind, Kind::Startup(_));
        if matches!(msg, Backend::Notification)
            || (!startup && matches!(msg, Backend::ParameterStatus { .. }))
        {
            return Ok(());
        }
        let status = match msg {
            Backend::ReadyForQuery(s) => Some(s),
            _ => None,
        };
        if front.apply(msg, len, self.options.max_body) == Outcome::Done
            && let Some(draft) = self.queue.pop_front()
        {
            self.done.push(draft.finish(times.end_ns, status, None));
        }
        Ok(())
    }
}
