//! An incremental parser of RESP2 and RESP3 values, as servers send them.
//!
//! Bytes arrive in whatever chunks the network gives: the parser keeps the
//! state of the value being read (a stack of open aggregates, the line or
//! bulk string in progress) and never re-reads what it consumed, so a value
//! fed one byte at a time costs what it costs fed whole. Every declared
//! length is checked before anything is reserved for it, and a value over
//! the caller's size cap is measured but not kept.

use reprise_model::{RespKind, RespValue};

use super::error::RespError;
use super::line::{Ending, LineReader, parse_length};

/// Deepest nesting of aggregates (attributes included) a value may have.
pub const MAX_DEPTH: usize = 64;
/// Longest bulk string (or streamed chunk) accepted: Redis's default
/// `proto-max-bulk-len`.
pub const MAX_BULK: u64 = 512 * 1024 * 1024;
/// Most elements an aggregate may declare (Redis's own bound on a
/// multibulk request, `INT_MAX`). Nothing is reserved from the count.
pub const MAX_AGGREGATE: u64 = i32::MAX as u64;
/// Longest simple line (simple string, error, number) of a reply.
const LINE_LIMIT: usize = 1 << 20;
/// Most elements reserved ahead from a declared count.
const RESERVE_AHEAD: u64 = 64;

/// One value read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The value; `None` when it was over the size cap.
    pub value: Option<RespValue>,
    /// Bytes of the value as received (its attributes included).
    pub size: u64,
    /// It was over the size cap, so not kept.
    pub truncated: bool,
    /// It was a RESP3 push (`>`): out-of-band data, no command's reply.
    pub push: bool,
}

/// Reads RESP values out of a byte stream, one at a time.
#[derive(Debug)]
pub struct ReplyParser {
    line: LineReader,
    state: State,
    stack: Vec<Frame>,
    attributes: Option<Box<RespValue>>,
    blob: Vec<u8>,
    max_kept: u64,
    size: u64,
    /// The last value completed was a push.
    last_push: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Expecting a type byte.
    Start,
    /// Reading the line after type byte `.0`.
    Line(u8),
    /// Reading the bytes of a bulk string (or of one streamed chunk).
    Blob {
        kind: u8,
        remaining: u64,
        chunked: bool,
    },
    /// Expecting the CRLF after bulk data; `seen` of its bytes read.
    BlobEnd { kind: u8, seen: u8, chunked: bool },
    /// Inside a streamed string, expecting a `;<len>` line.
    ChunkHeader { kind: u8 },
}

/// An aggregate being read.
#[derive(Debug)]
struct Frame {
    kind: u8,
    /// Elements still to come; `None` when streamed (ended by `.`).
    remaining: Option<u64>,
    /// Elements read so far (kept or not).
    count: u64,
    items: Vec<RespValue>,
    attributes: Option<Box<RespValue>>,
}

enum Closed {
    Value(Option<RespValue>),
    Attributes,
}

impl ReplyParser {
    /// A parser that keeps values of up to `max_kept` bytes; bigger ones
    /// are read through and reported by size alone.
    pub fn new(max_kept: u64) -> Self {
        ReplyParser {
            line: LineReader::default(),
            state: State::Start,
            stack: Vec::new(),
            attributes: None,
            blob: Vec::new(),
            max_kept,
            size: 0,
            last_push: false,
        }
    }

    /// Consumes bytes from `input` until one value is complete (returned,
    /// with `input` left at the byte after it) or `input` is used up
    /// (`None`; what was read is kept for the next call).
    pub fn parse(&mut self, input: &mut &[u8]) -> Result<Option<Reply>, RespError> {
        while !input.is_empty() {
            let before = input.len();
            let done = self.step(input)?;
            self.size = self
                .size
                .saturating_add((before.saturating_sub(input.len())) as u64);
            if self.size > self.max_kept {
                self.drop_kept();
            }
            if let Some(value) = done {
                let truncated = self.size > self.max_kept;
                let reply = Reply {
                    value: if truncated { None } else { value },
                    size: self.size,
                    truncated,
                    push: self.last_push,
                };
                self.size = 0;
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }

    /// A value has been started but not finished.
    pub fn in_progress(&self) -> bool {
        self.size > 0
    }

    fn dropping(&self) -> bool {
        self.size > self.max_kept
    }

    /// Frees what was kept of a value now known to be over the cap.
    fn drop_kept(&mut self) {
        for frame in &mut self.stack {
            frame.items = Vec::new();
            frame.attributes = None;
        }
        self.attributes = None;
        self.blob = Vec::new();
    }

    /// One step of the state machine; consumes at least one byte.
    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Option<RespValue>>, RespError> {
        match self.state {
            State::Start => {
                let Some((&kind, rest)) = input.split_first() else {
                    return Ok(None);
                };
                if !b"+-:$*_,#!=(%~|>.".contains(&kind) {
                    return Err(RespError::UnknownType(kind));
                }
                *input = rest;
                self.state = State::Line(kind);
                Ok(None)
            }
            State::Line(kind) => match self.line.read(input, LINE_LIMIT, Ending::Crlf)? {
                None => Ok(None),
                Some(text) => {
                    self.state = State::Start;
                    self.on_line(kind, &text)
                }
            },
            State::ChunkHeader { kind } => match self.line.read(input, LINE_LIMIT, Ending::Crlf)? {
                None => Ok(None),
                Some(text) => {
                    let Some((&b';', len)) = text.split_first() else {
                        return Err(RespError::ExpectedChunk(
                            text.first().copied().unwrap_or(b'\r'),
                        ));
                    };
                    let len = parse_length(len, false)? as u64;
                    if len > MAX_BULK {
                        return Err(RespError::BulkTooLong(len));
                    }
                    if len == 0 {
                        self.state = State::Start;
                        let data = std::mem::take(&mut self.blob);
                        return Ok(self.leaf(blob_kind(kind), data));
                    }
                    self.state = State::Blob {
                        kind,
                        remaining: len,
                        chunked: true,
                    };
                    Ok(None)
                }
            },
            State::Blob {
                kind,
                remaining,
                chunked,
            } => {
                let take = remaining.min(input.len() as u64);
                let (data, rest) = input.split_at(take as usize);
                *input = rest;
                if !self.dropping() && self.size.saturating_add(take) <= self.max_kept {
                    self.blob.extend_from_slice(data);
                } else {
                    self.blob = Vec::new();
                }
                let remaining = remaining - take;
                self.state = if remaining == 0 {
                    State::BlobEnd {
                        kind,
                        seen: 0,
                        chunked,
                    }
                } else {
                    State::Blob {
                        kind,
                        remaining,
                        chunked,
                    }
                };
                Ok(None)
            }
            State::BlobEnd {
                kind,
                seen,
                chunked,
            } => {
                let Some((&byte, rest)) = input.split_first() else {
                    return Ok(None);
                };
                let expected = if seen == 0 { b'\r' } else { b'\n' };
                if byte != expected {
                    return Err(RespError::MissingCrlf);
                }
                *input = rest;
                if seen == 0 {
                    self.state = State::BlobEnd {
                        kind,
                        seen: 1,
                        chunked,
                    };
                    return Ok(None);
                }
                if chunked {
                    self.state = State::ChunkHeader { kind };
                    return Ok(None);
                }
                self.state = State::Start;
                let data = std::mem::take(&mut self.blob);
                Ok(self.leaf(blob_kind(kind), data))
            }
        }
    }

    fn on_line(&mut self, kind: u8, text: &[u8]) -> Result<Option<Option<RespValue>>, RespError> {
        let lossy = || String::from_utf8_lossy(text).into_owned();
        match kind {
            b'+' => Ok(self.leaf(RespKind::SimpleString, text.to_vec())),
            b'-' => Ok(self.leaf(RespKind::Error, text.to_vec())),
            b',' => Ok(self.leaf(RespKind::Double, text.to_vec())),
            b'(' => Ok(self.leaf(RespKind::BigNumber, text.to_vec())),
            b':' => {
                let valid = std::str::from_utf8(text)
                    .ok()
                    .is_some_and(|s| s.parse::<i64>().is_ok());
                if !valid {
                    return Err(RespError::InvalidInteger(lossy()));
                }
                Ok(self.leaf(RespKind::Integer, text.to_vec()))
            }
            b'#' => {
                if text != b"t" && text != b"f" {
                    return Err(RespError::InvalidBoolean(lossy()));
                }
                Ok(self.leaf(RespKind::Boolean, text.to_vec()))
            }
            b'_' => {
                if !text.is_empty() {
                    return Err(RespError::InvalidNull(lossy()));
                }
                Ok(self.leaf(RespKind::Null, Vec::new()))
            }
            b'$' | b'!' | b'=' => {
                if text == b"?" {
                    self.blob = Vec::new();
                    self.state = State::ChunkHeader { kind };
                    return Ok(None);
                }
                let len = parse_length(text, kind == b'$')?;
                if len < 0 {
                    return Ok(self.leaf(RespKind::Null, Vec::new()));
                }
                let len = len as u64;
                if len > MAX_BULK {
                    return Err(RespError::BulkTooLong(len));
                }
                self.blob = Vec::new();
                self.state = if len == 0 {
                    State::BlobEnd {
                        kind,
                        seen: 0,
                        chunked: false,
                    }
                } else {
                    State::Blob {
                        kind,
                        remaining: len,
                        chunked: false,
                    }
                };
                Ok(None)
            }
            b'*' | b'~' | b'%' | b'|' | b'>' => {
                let streamed = text == b"?" && matches!(kind, b'*' | b'~' | b'%');
                let remaining = if streamed {
                    None
                } else {
                    let count = parse_length(text, kind == b'*')?;
                    if count < 0 {
                        return Ok(self.leaf(RespKind::NullArray, Vec::new()));
                    }
                    let count = count as u64;
                    if count > MAX_AGGREGATE {
                        return Err(RespError::AggregateTooLong(count));
                    }
                    Some(if matches!(kind, b'%' | b'|') {
                        count * 2
                    } else {
                        count
                    })
                };
                if self.stack.len() >= MAX_DEPTH {
                    return Err(RespError::TooDeep(MAX_DEPTH));
                }
                let frame = Frame {
                    kind,
                    remaining,
                    count: 0,
                    items: Vec::with_capacity(remaining.unwrap_or(0).min(RESERVE_AHEAD) as usize),
                    attributes: if kind == b'|' {
                        None
                    } else {
                        self.attributes.take()
                    },
                };
                if remaining == Some(0) {
                    return Ok(self.close(frame));
                }
                self.stack.push(frame);
                Ok(None)
            }
            b'.' => {
                let streamed_top = self.stack.last().is_some_and(|f| f.remaining.is_none());
                if !text.is_empty() || !streamed_top {
                    return Err(RespError::UnexpectedEnd);
                }
                let Some(frame) = self.stack.pop() else {
                    return Err(RespError::UnexpectedEnd);
                };
                if frame.kind == b'%' && frame.count % 2 == 1 {
                    return Err(RespError::UnexpectedEnd);
                }
                // Attributes right before the end describe nothing.
                self.attributes = None;
                Ok(self.close(frame))
            }
            other => Err(RespError::UnknownType(other)),
        }
    }

    /// A simple value is complete.
    fn leaf(&mut self, kind: RespKind, data: Vec<u8>) -> Option<Option<RespValue>> {
        self.last_push = false;
        let value = (!self.dropping()).then(|| RespValue {
            kind: kind as i32,
            data,
            items: Vec::new(),
            attributes: self.attributes.take(),
        });
        self.deliver(value)
    }

    /// An aggregate is complete.
    fn close(&mut self, frame: Frame) -> Option<Option<RespValue>> {
        match self.finish(frame) {
            Closed::Value(value) => self.deliver(value),
            Closed::Attributes => None,
        }
    }

    fn finish(&mut self, frame: Frame) -> Closed {
        let kind = match frame.kind {
            b'~' => RespKind::Set,
            b'%' | b'|' => RespKind::Map,
            b'>' => RespKind::Push,
            _ => RespKind::Array,
        };
        let value = (!self.dropping()).then(|| RespValue {
            kind: kind as i32,
            data: Vec::new(),
            items: frame.items,
            attributes: frame.attributes,
        });
        if frame.kind == b'|' {
            self.attributes = value.map(Box::new);
            return Closed::Attributes;
        }
        self.last_push = frame.kind == b'>';
        Closed::Value(value)
    }

    /// Hands a complete value to the aggregate it is in, closing those it
    /// completes; `Some` when it completes the top-level value.
    fn deliver(&mut self, mut value: Option<RespValue>) -> Option<Option<RespValue>> {
        loop {
            let dropping = self.dropping();
            let Some(top) = self.stack.last_mut() else {
                return Some(value);
            };
            if let Some(v) = value.take()
                && !dropping
            {
                top.items.push(v);
            }
            top.count += 1;
            match top.remaining.as_mut() {
                None => return None,
                Some(rest) => {
                    *rest = rest.saturating_sub(1);
                    if *rest > 0 {
                        return None;
                    }
                }
            }
            let frame = self.stack.pop()?;
            match self.finish(frame) {
                Closed::Value(v) => value = v,
                Closed::Attributes => return None,
            }
        }
    }
}

fn blob_kind(kind: u8) -> RespKind {
    match kind {
        b'!' => RespKind::BlobError,
        b'=' => RespKind::VerbatimString,
        _ => RespKind::BulkString,
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
