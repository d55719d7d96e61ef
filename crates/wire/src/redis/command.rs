//! An incremental parser of commands, as clients send them: an array of
//! bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), or an inline line
//! (`GET k\r\n`), told apart by the first byte as Redis does.

use super::error::RespError;
use super::inline::split_inline;
use super::line::{Ending, LineReader, parse_length};
use super::reply::MAX_BULK;

/// Longest inline command, or multibulk header line, Redis reads
/// (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_LIMIT: usize = 64 * 1024;
/// Most arguments a command may declare (Redis: `INT_MAX`).
pub const MAX_ARGS: u64 = i32::MAX as u64;
/// Bytes reserved ahead for an argument, whatever length it declares.
const RESERVE_AHEAD: u64 = 64 * 1024;

/// One command read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command's name, then its arguments, as sent. When the command
    /// is over the size cap, only the arguments that fit under it.
    pub args: Vec<Vec<u8>>,
    /// Bytes of the command as received.
    pub size: u64,
    /// Arguments were left out because the command was over the cap.
    pub truncated: bool,
    /// Sent inline (a text line) rather than as an array.
    pub inline: bool,
    /// The `at_ns` of the chunk its first byte came in.
    pub started_ns: u64,
}

/// Reads commands out of a client's byte stream, one at a time.
#[derive(Debug)]
pub struct CommandParser {
    line: LineReader,
    state: State,
    args: Vec<Vec<u8>>,
    current: Vec<u8>,
    remaining_args: u64,
    kept: u64,
    max_kept: u64,
    truncated: bool,
    size: u64,
    started_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Inline,
    Count,
    ArgHeader,
    ArgData { remaining: u64 },
    ArgEnd { seen: u8 },
}

impl CommandParser {
    /// A parser that keeps arguments while their bytes stay within
    /// `max_kept`.
    pub fn new(max_kept: u64) -> Self {
        CommandParser {
            line: LineReader::default(),
            state: State::Start,
            args: Vec::new(),
            current: Vec::new(),
            remaining_args: 0,
            kept: 0,
            max_kept,
            truncated: false,
            size: 0,
            started_ns: 0,
        }
    }

    /// Consumes bytes from `input` until one command is complete (returned,
    /// `input` left after it) or `input` is used up (`None`). `at_ns` is
    /// when this chunk arrived. Empty commands (`*0`, a blank line) are
    /// skipped, as Redis skips them.
    pub fn parse(&mut self, input: &mut &[u8], at_ns: u64) -> Result<Option<Command>, RespError> {
        while !input.is_empty() {
            if self.state == State::Start && self.size == 0 {
                self.started_ns = at_ns;
            }
            let before = input.len();
            let done = self.step(input)?;
            self.size = self
                .size
                .saturating_add(before.saturating_sub(input.len()) as u64);
            match done {
                Step::More => {}
                Step::Empty => self.reset(),
                Step::Done(inline) => {
                    let command = Command {
                        args: std::mem::take(&mut self.args),
                        size: self.size,
                        truncated: self.truncated,
                        inline,
                        started_ns: self.started_ns,
                    };
                    self.reset();
                    return Ok(Some(command));
                }
            }
        }
        Ok(None)
    }

    /// A command has been started but not finished.
    pub fn in_progress(&self) -> bool {
        self.size > 0
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.args = Vec::new();
        self.current = Vec::new();
        self.kept = 0;
        self.truncated = false;
        self.size = 0;
    }

    /// Keeps an argument if it fits under the cap (and all before it did).
    fn keep(&mut self, arg: Vec<u8>) {
        let kept = self.kept.saturating_add(arg.len() as u64);
        if self.truncated || kept > self.max_kept {
            self.truncated = true;
        } else {
            self.kept = kept;
            self.args.push(arg);
        }
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Step, RespError> {
        match self.state {
            State::Start => {
                if let Some((b'*', rest)) = input.split_first() {
                    *input = rest;
                    self.state = State::Count;
                } else {
                    self.state = State::Inline;
                }
                Ok(Step::More)
            }
            State::Inline => match self.line.read(input, INLINE_LIMIT, Ending::LfOrCrlf)? {
                None => Ok(Step::More),
                Some(line) => {
                    let args = split_inline(&line)?;
                    if args.is_empty() {
                        return Ok(Step::Empty);
                    }
                    for arg in args {
                        self.keep(arg);
                    }
                    Ok(Step::Done(true))
                }
            },
            State::Count => match self.line.read(input, INLINE_LIMIT, Ending::Crlf)? {
                None => Ok(Step::More),
                Some(text) => {
                    let count = parse_length(&text, true)?;
                    if count <= 0 {
                        return Ok(Step::Empty);
                    }
                    let count = count as u64;
                    if count > MAX_ARGS {
                        return Err(RespError::AggregateTooLong(count));
                    }
                    self.remaining_args = count;
                    self.state = State::ArgHeader;
                    Ok(Step::More)
                }
            },
            State::ArgHeader => match self.line.read(input, INLINE_LIMIT, Ending::Crlf)? {
                None => Ok(Step::More),
                Some(text) => {
                    let Some((b'$', len)) = text.split_first() else {
                        return Err(RespError::ExpectedBulk(
                            text.first().copied().unwrap_or(b'\r'),
                        ));
                    };
                    let len = parse_length(len, false)? as u64;
                    if len > MAX_BULK {
                        return Err(RespError::BulkTooLong(len));
                    }
                    self.current = Vec::new();
                    if !self.truncated && self.kept.saturating_add(len) <= self.max_kept {
                        self.current.reserve(len.min(RESERVE_AHEAD) as usize);
                    }
                    self.state = if len == 0 {
                        State::ArgEnd { seen: 0 }
                    } else {
                        State::ArgData { remaining: len }
                    };
                    Ok(Step::More)
                }
            },
            State::ArgData { remaining } => {
                let take = remaining.min(input.len() as u64);
                let (data, rest) = input.split_at(take as usize);
                *input = rest;
                let fits = self
                    .kept
                    .saturating_add(self.current.len() as u64)
                    .saturating_add(take)
                    <= self.max_kept;
                if !self.truncated && fits {
                    self.current.extend_from_slice(data);
                } else {
                    self.truncated = true;
                    self.current = Vec::new();
                }
                let remaining = remaining - take;
                self.state = if remaining == 0 {
                    State::ArgEnd { seen: 0 }
                } else {
                    State::ArgData { remaining }
                };
                Ok(Step::More)
            }
            State::ArgEnd { seen } => {
                let Some((&byte, rest)) = input.split_first() else {
                    return Ok(Step::More);
                };
                if byte != if seen == 0 { b'\r' } else { b'\n' } {
                    return Err(RespError::MissingCrlf);
                }
                *input = rest;
                if seen == 0 {
                    self.state = State::ArgEnd { seen: 1 };
                    return Ok(Step::More);
                }
                let arg = std::mem::take(&mut self.current);
                self.keep(arg);
                self.remaining_args -= 1;
                if self.remaining_args == 0 {
                    return Ok(Step::Done(false));
                }
                self.state = State::ArgHeader;
                Ok(Step::More)
            }
        }
    }
}

enum Step {
    More,
    Empty,
    Done(bool),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(bytes: &[u8], max: u64) -> Result<Vec<Command>, RespError> {
        let mut parser = CommandParser::new(max);
        let mut input = bytes;
        let mut out = Vec::new();
        while let Some(c) = parser.parse(&mut input, 7)? {
            out.push(c);
        }
        Ok(out)
    }

    fn args(c: &Command) -> Vec<&[u8]> {
        c.args.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn multibulk_and_inline() {
        let got = all(
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\nset a \"b c\"\n",
            1 << 20,
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(args(&got[0]), [&b"GET"[..], b"k"]);
        assert!(!got[0].inline);
        assert_eq!(got[0].size, 20);
        assert_eq!(args(&got[1]), [&b"PING"[..]]);
        assert!(got[1].inline);
        assert_eq!(args(&got[2]), [&b"set"[..], b"a", b"b c"]);
        assert_eq!(got[2].started_ns, 7);
    }

    #[test]
    fn empty_commands_are_skipped() {
        let got = all(b"*0\r\n\r\n*-1\r\n   \r\nPING\r\n", 64).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].size, 6);
    }

    #[test]
    fn an_empty_argument_is_kept() {
        let got = all(b"*2\r\n$3\r\nSET\r\n$0\r\n\r\n", 64).unwrap();
        assert_eq!(args(&got[0]), [&b"SET"[..], b""]);
    }

    #[test]
    fn over_the_cap_keeps_the_arguments_that_fit() {
        let got = all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n", 8).unwrap();
        assert_eq!(args(&got[0]), [&b"SET"[..], b"k"]);
        assert!(got[0].truncated);
        assert_eq!(got[0].size, 37);
    }

    #[test]
    fn malformed_commands_are_typed_errors() {
        assert_eq!(all(b"*1\r\n:1\r\n", 64), Err(RespError::ExpectedBulk(b':')));
        assert!(matches!(
            all(b"*1\r\n$-1\r\n", 64),
            Err(RespError::InvalidLength(_))
        ));
        assert_eq!(
            all(b"*1\r\n$999999999999\r\n", 64),
            Err(RespError::BulkTooLong(999_999_999_999))
        );
        assert_eq!(all(b"*1\r\n$1\r\nab\r\n", 64), Err(RespError::MissingCrlf));
        assert_eq!(
            all(b"*3000000000\r\n", 64),
            Err(RespError::AggregateTooLong(3_000_000_000))
        );
        assert_eq!(all(b"*1\n", 64), Err(RespError::BareLineFeed));
        let long = vec![b'a'; INLINE_LIMIT + 10];
        assert_eq!(
            all(&long, 64),
            Err(RespError::LineTooLong {
                limit: INLINE_LIMIT
            })
        );
    }

    #[test]
    fn a_declared_length_reserves_nothing_big() {
        let mut parser = CommandParser::new(u64::MAX);
        let mut input: &[u8] = b"*1\r\n$536870912\r\nab";
        assert_eq!(parser.parse(&mut input, 0).unwrap(), None);
        assert!(parser.current.capacity() <= RESERVE_AHEAD as usize);
    }
}
