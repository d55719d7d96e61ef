//! A Redis connection cut into exchanges: one per command, with its reply.
//!
//! The recorder relays every byte unchanged and feeds a copy of each
//! direction here (the client's bytes before it relays them, so that a
//! command is always seen before its reply). Replies come back in the
//! order the commands were sent, so a FIFO of commands waiting for their
//! replies pairs them however deep the client pipelines. RESP3 push
//! messages are out of band and skipped. From SUBSCRIBE, MONITOR or CLIENT
//! REPLY OFF/SKIP on, replies no longer pair with commands: the connection
//! is passed through and only counted. On bytes that are not RESP the
//! conversation stops cutting (see [`Conversation::broken`]); the
//! recorder keeps relaying.

use std::collections::VecDeque;

use reprise_model::{DbCall, RedisCommand, RespKind, RespValue};

use super::command::{Command, CommandParser};
use super::encode::RespVersion;
use super::error::{Direction, RedisError, RespError};
use super::redact::redact_command;
use super::reply::{Reply, ReplyParser};
use super::writes::is_write;
use crate::DbExchange;

/// Most commands kept waiting for their replies; a client further ahead
/// than this is not recorded.
pub const MAX_PENDING: usize = 1 << 20;

/// How a conversation records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisOptions {
    /// Largest reply (and command) kept, bytes: a bigger one is measured,
    /// not kept, and its exchange not mockable.
    pub max_body: u64,
}

/// Where a connection stopped being recorded and what went by since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    /// Why: `"pub/sub"`, `"MONITOR"`, `"CLIENT REPLY OFF"`...
    pub reason: &'static str,
    /// Commands sent behind the one that began it, before it began.
    pub commands: u64,
    /// Bytes from the client relayed since, unrecorded.
    pub client_bytes: u64,
    /// Bytes from the server relayed since, unrecorded.
    pub server_bytes: u64,
}

/// Cuts one Redis connection's two byte streams into exchanges.
#[derive(Debug)]
pub struct Conversation {
    options: RedisOptions,
    commands: CommandParser,
    replies: ReplyParser,
    pending: VecDeque<Pending>,
    done: Vec<DbExchange>,
    version: RespVersion,
    /// In MULTI: whether a queued command writes.
    multi: Option<bool>,
    broken: Option<RedisError>,
    passthrough: Option<Passthrough>,
    client_offset: u64,
    server_offset: u64,
    pushes_skipped: u64,
    closed: bool,
}

/// A command waiting for its reply.
#[derive(Debug)]
struct Pending {
    command: Command,
    write: bool,
    effect: Effect,
}

/// What a command's reply changes about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    /// HELLO: the version it asks for.
    Hello(RespVersion),
    /// RESET: back to RESP2, out of MULTI.
    Reset,
    /// Replies stop pairing with commands once it succeeds.
    Enters(&'static str),
    /// No reply comes, and replies stop pairing with commands.
    NoReply(&'static str),
}

impl Conversation {
    /// A conversation for a new connection (RESP2 until HELLO 3).
    pub fn new(options: RedisOptions) -> Self {
        Conversation {
            options,
            commands: CommandParser::new(options.max_body),
            replies: ReplyParser::new(options.max_body),
            pending: VecDeque::new(),
            done: Vec::new(),
            version: RespVersion::Resp2,
            multi: None,
            broken: None,
            passthrough: None,
            client_offset: 0,
            server_offset: 0,
            pushes_skipped: 0,
            closed: false,
        }
    }

    /// Bytes the client sent, as they arrived at `at_ns`.
    pub fn client(&mut self, bytes: &[u8], at_ns: u64) {
        let mut input = bytes;
        while !self.closed
            && self.broken.is_none()
            && self.passthrough.is_none()
            && !input.is_empty()
        {
            let parsed = self.commands.parse(&mut input, at_ns);
            let offset = self.client_offset + (bytes.len() - input.len()) as u64;
            match parsed {
                Ok(Some(command)) => self.on_command(command, offset, at_ns),
                Ok(None) => {}
                Err(kind) => self.break_with(Direction::Client, offset, kind, at_ns),
            }
        }
        if let Some(passthrough) = &mut self.passthrough {
            passthrough.client_bytes += input.len() as u64;
        }
        self.client_offset += bytes.len() as u64;
    }

    /// Bytes the server sent, as they arrived at `at_ns`.
    pub fn server(&mut self, bytes: &[u8], at_ns: u64) {
        let mut input = bytes;
        while !self.closed
            && self.broken.is_none()
            && self.passthrough.is_none()
            && !input.is_empty()
        {
            let parsed = self.replies.parse(&mut input);
            let offset = self.server_offset + (bytes.len() - input.len()) as u64;
            match parsed {
                Ok(Some(reply)) => self.on_reply(reply, offset, at_ns),
                Ok(None) => {}
                Err(kind) => self.break_with(Direction::Server, offset, kind, at_ns),
            }
        }
        if let Some(passthrough) = &mut self.passthrough {
            passthrough.server_bytes += input.len() as u64;
        }
        self.server_offset += bytes.len() as u64;
    }

    /// The exchanges cut so far, handed over once.
    pub fn take(&mut self) -> Vec<DbExchange> {
        std::mem::take(&mut self.done)
    }

    /// The connection ended at `at_ns` (`reason`: why, when it broke):
    /// commands still waiting come out incomplete. Returns what
    /// [`take`](Self::take) would, these included; later bytes are ignored.
    pub fn close(&mut self, at_ns: u64, reason: Option<&str>) -> Vec<DbExchange> {
        if !self.closed {
            self.closed = true;
            let why = match reason {
                Some(reason) => format!("the connection ended before the reply: {reason}"),
                None => "the connection closed before the reply".to_owned(),
            };
            self.abandon(&why, at_ns);
        }
        self.take()
    }

    /// Why the conversation stopped cutting, when the bytes stopped being
    /// RESP (or a reply came with no command waiting).
    pub fn broken(&self) -> Option<&RedisError> {
        self.broken.as_ref()
    }

    /// Whether, why and how much the connection has been passed through
    /// unrecorded (pub/sub, MONITOR, CLIENT REPLY).
    pub fn passthrough(&self) -> Option<&Passthrough> {
        self.passthrough.as_ref()
    }

    /// RESP3 push messages (out-of-band: pub/sub messages, client-side
    /// caching invalidations) skipped.
    pub fn pushes_skipped(&self) -> u64 {
        self.pushes_skipped
    }

    /// The protocol version now in force.
    pub fn version(&self) -> RespVersion {
        self.version
    }

    fn on_command(&mut self, mut command: Command, offset: u64, at_ns: u64) {
        redact_command(&mut command.args);
        let name = command
            .args
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let rest = command.args.get(1..).unwrap_or_default();
        let in_multi = self.multi.is_some();
        let write = match name.as_slice() {
            b"MULTI" => {
                self.multi = Some(false);
                false
            }
            b"EXEC" => self.multi.take().unwrap_or(false),
            b"DISCARD" => {
                self.multi = None;
                false
            }
            _ => {
                let write = is_write(&name, rest);
                if let Some(any) = &mut self.multi {
                    *any |= write;
                }
                write
            }
        };
        // Queued in MULTI, a command changes nothing about the connection
        // when it is answered (+QUEUED).
        let effect = if in_multi {
            Effect::None
        } else {
            effect_of(&name, rest)
        };
        if self.pending.len() >= MAX_PENDING {
            self.break_with(
                Direction::Client,
                offset,
                RespError::TooManyPending(MAX_PENDING),
                at_ns,
            );
            return;
        }
        self.pending.push_back(Pending {
            command,
            write,
            effect,
        });
        self.settle(at_ns);
    }

    fn on_reply(&mut self, reply: Reply, offset: u64, at_ns: u64) {
        let entering = self
            .pending
            .front()
            .is_some_and(|p| matches!(p.effect, Effect::Enters(_)));
        if reply.push && !entering {
            self.pushes_skipped += 1;
            return;
        }
        let Some(pending) = self.pending.pop_front() else {
            self.break_with(Direction::Server, offset, RespError::UnexpectedReply, at_ns);
            return;
        };
        let failed = reply.value.as_ref().is_some_and(|v| {
            v.kind == RespKind::Error as i32 || v.kind == RespKind::BlobError as i32
        });
        let mut not_mockable = String::new();
        let mut enters = None;
        if !failed {
            match pending.effect {
                Effect::Hello(version) => self.version = version,
                Effect::Reset => {
                    self.version = RespVersion::Resp2;
                    self.multi = None;
                }
                Effect::Enters(reason) => {
                    not_mockable = reason.to_owned();
                    enters = Some(reason);
                }
                Effect::None | Effect::NoReply(_) => {}
            }
        }
        if reply.truncated {
            not_mockable = format!(
                "a reply of {} bytes, over the {}-byte cap",
                reply.size, self.options.max_body
            );
        }
        let exchange = Answer {
            reply: reply.value,
            size: reply.size,
            truncated: reply.truncated,
            not_mockable,
            incomplete: None,
        };
        self.emit(pending, exchange, at_ns);
        match enters {
            Some(reason) => self.begin_passthrough(reason),
            None => self.settle(at_ns),
        }
    }

    /// Commands at the front that get no reply are done as soon as they
    /// are there.
    fn settle(&mut self, at_ns: u64) {
        let Some(Effect::NoReply(reason)) = self.pending.front().map(|p| p.effect) else {
            return;
        };
        if let Some(pending) = self.pending.pop_front() {
            let answer = Answer {
                reply: None,
                size: 0,
                truncated: false,
                not_mockable: reason.to_owned(),
                incomplete: None,
            };
            self.emit(pending, answer, at_ns);
        }
        self.begin_passthrough(reason);
    }

    fn begin_passthrough(&mut self, reason: &'static str) {
        self.passthrough = Some(Passthrough {
            reason,
            commands: self.pending.len() as u64,
            client_bytes: 0,
            server_bytes: 0,
        });
        self.pending.clear();
    }

    fn break_with(&mut self, direction: Direction, offset: u64, kind: RespError, at_ns: u64) {
        let error = RedisError {
            direction,
            offset,
            kind,
        };
        let why = format!("the stream stopped making sense: {error}");
        self.broken = Some(error);
        self.abandon(&why, at_ns);
    }

    /// Every command still waiting comes out incomplete.
    fn abandon(&mut self, why: &str, at_ns: u64) {
        while let Some(pending) = self.pending.pop_front() {
            let answer = Answer {
                reply: None,
                size: 0,
                truncated: false,
                not_mockable: String::new(),
                incomplete: Some(why.to_owned()),
            };
            self.emit(pending, answer, at_ns);
        }
    }

    fn emit(&mut self, pending: Pending, answer: Answer, ended_ns: u64) {
        let mut not_mockable = answer.not_mockable;
        if pending.command.truncated {
            not_mockable = format!(
                "a command of {} bytes, over the {}-byte cap",
                pending.command.size, self.options.max_body
            );
        }
        let call = DbCall {
            redis: Some(RedisCommand {
                args: pending.command.args,
                reply: answer.reply,
                reply_size: answer.size,
                reply_truncated: answer.truncated,
            }),
            resp_version: self.version.number(),
            write: pending.write,
            not_mockable,
            ..DbCall::default()
        };
        self.done.push(DbExchange {
            call,
            started_ns: pending.command.started_ns,
            ended_ns,
            traceparent: None,
            incomplete: answer.incomplete,
        });
    }
}

/// How a command was answered.
struct Answer {
    reply: Option<RespValue>,
    size: u64,
    truncated: bool,
    not_mockable: String,
    incomplete: Option<String>,
}

/// What the reply to command `name` (upper-cased) changes.
fn effect_of(name: &[u8], args: &[Vec<u8>]) -> Effect {
    let first = |word: &str| {
        args.first()
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    };
    let second = |word: &str| {
        args.get(1)
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    };
    match name {
        b"HELLO" if first("3") => Effect::Hello(RespVersion::Resp3),
        b"HELLO" if first("2") => Effect::Hello(RespVersion::Resp2),
        b"RESET" => Effect::Reset,
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" => Effect::Enters("pub/sub"),
        b"MONITOR" => Effect::Enters("MONITOR"),
        b"CLIENT" if first("REPLY") && second("OFF") => Effect::NoReply("CLIENT REPLY OFF"),
        b"CLIENT" if first("REPLY") && second("SKIP") => Effect::NoReply("CLIENT REPLY SKIP"),
        _ => Effect::None,
    }
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
