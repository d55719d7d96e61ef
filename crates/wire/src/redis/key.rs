//! What the mock matches a command on.

use std::fmt;

use super::redact::redact_command;

/// Commands whose first argument is a subcommand, matched in any case.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// A command as the mock matches it: the name upper-cased (Redis reads
/// names in any case), the subcommand of a container command (CONFIG GET,
/// CLIENT SETNAME...) upper-cased too, the other arguments byte for byte,
/// secrets replaced by the redaction marker as they were when recorded.
/// Options such as `EX` are compared as sent: a client sends them the same
/// way each time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandKey {
    /// The name, upper-cased.
    pub name: Vec<u8>,
    /// The arguments after the name.
    pub args: Vec<Vec<u8>>,
}

/// The key of a command (`args`: its name, then its arguments).
pub fn command_key<A: AsRef<[u8]>>(args: &[A]) -> CommandKey {
    let mut all: Vec<Vec<u8>> = args.iter().map(|a| a.as_ref().to_vec()).collect();
    redact_command(&mut all);
    let mut all = all.into_iter();
    let name = all.next().unwrap_or_default().to_ascii_uppercase();
    let mut args: Vec<Vec<u8>> = all.collect();
    let container = CONTAINERS.iter().any(|c| c.as_bytes() == name.as_slice());
    if container && let Some(sub) = args.first_mut() {
        sub.make_ascii_uppercase();
    }
    CommandKey { name, args }
}

impl fmt::Display for CommandKey {
    /// `NAME arg arg`, arguments shown as text (escaped where not).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name.escape_ascii())?;
        for arg in &self.args {
            write!(f, " {}", arg.escape_ascii())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_model::redact::MARKER;

    #[test]
    fn names_and_subcommands_in_any_case() {
        assert_eq!(command_key(&["get", "Key"]), command_key(&["GET", "Key"]));
        assert_ne!(command_key(&["GET", "key"]), command_key(&["GET", "Key"]));
        assert_eq!(
            command_key(&["config", "get", "maxmemory"]),
            command_key(&["CONFIG", "GET", "maxmemory"])
        );
        assert_ne!(
            command_key(&["SET", "k", "v"]),
            command_key(&["SET", "K", "v"])
        );
    }

    #[test]
    fn secrets_match_the_recorded_marker() {
        assert_eq!(command_key(&["AUTH", "pw"]), command_key(&["auth", MARKER]));
        assert_eq!(command_key(&["AUTH", "pw"]).to_string(), "AUTH [redacted]");
    }

    #[test]
    fn empty() {
        let none: [&str; 0] = [];
        assert_eq!(command_key(&none).to_string(), "");
    }
}
