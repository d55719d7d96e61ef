//! The server side of a connection, for the mock: client bytes in,
//! commands out, with the parser the recorder uses.

use super::command::{Command, CommandParser};
use super::error::{Direction, RedisError};

/// Reads the commands a client sends to the mock.
#[derive(Debug)]
pub struct Session {
    parser: CommandParser,
    offset: u64,
    broken: Option<RedisError>,
}

impl Session {
    /// A session keeping commands of up to `max_command` bytes whole
    /// (bigger ones come out `truncated`).
    pub fn new(max_command: u64) -> Self {
        Session {
            parser: CommandParser::new(max_command),
            offset: 0,
            broken: None,
        }
    }

    /// Bytes from the client: the commands they complete, in order
    /// (arguments as sent, secrets included: the mock matches with
    /// [`command_key`](super::command_key), which redacts). After an error
    /// the session stays broken: answer `-ERR Protocol error` and close,
    /// as Redis does.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Command>, RedisError> {
        if let Some(error) = &self.broken {
            return Err(error.clone());
        }
        let mut input = bytes;
        let mut commands = Vec::new();
        while !input.is_empty() {
            let parsed = self.parser.parse(&mut input, 0);
            let offset = self.offset + (bytes.len() - input.len()) as u64;
            match parsed {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => {}
                Err(kind) => {
                    let error = RedisError {
                        direction: Direction::Client,
                        offset,
                        kind,
                    };
                    self.broken = Some(error.clone());
                    return Err(error);
                }
            }
        }
        self.offset += bytes.len() as u64;
        Ok(commands)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunking_does_not_change_errors() {
        let bytes = b"*2\r\n$9\r\nSUBSCRI\rEB\n$1\r\nc\r\n";
        let whole = Session::new(800).feed(bytes);
        let mut bytewise = Session::new(800);
        let mut split = Ok(Vec::new());
        for b in bytes {
            match bytewise.feed(std::slice::from_ref(b)) {
                Ok(more) => split.as_mut().unwrap().extend(more),
                Err(e) => {
                    split = Err(e);
                    break;
                }
            }
        }
        assert_eq!(whole, split);
    }
}
