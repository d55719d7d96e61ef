//! Errors as people read them.

/// An error and its causes on one line, `outer: cause: root cause`,
/// without repeating a cause whose text an outer message already holds.
/// Control characters (a recorded path quoted in a message) are shown
/// escaped ([`crate::terminal::escape`]), so the line stays one line.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = cause.source();
    }
    crate::terminal::escape(&line).into_owned()
}

/// The transport failure an I/O error in `error`'s causes tells, if any:
/// refused is `connect`, timed out `timeout`, reset, aborted, a broken
/// pipe or an early end `reset`, anything else `other`. Every networked
/// part sorts its clients' failures with it first.
pub fn io_failure(error: &(dyn std::error::Error + 'static)) -> Option<crate::ErrorKind> {
    use crate::ErrorKind;
    use std::io::ErrorKind as Io;
    let io = std::iter::successors(Some(error), |e| e.source())
        .find_map(|e| e.downcast_ref::<std::io::Error>())?;
    Some(match io.kind() {
        Io::ConnectionRefused => ErrorKind::Connect,
        Io::TimedOut => ErrorKind::Timeout,
        Io::ConnectionReset | Io::BrokenPipe | Io::ConnectionAborted | Io::UnexpectedEof => {
            ErrorKind::Reset
        }
        _ => ErrorKind::Other,
    })
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn causes_joined_once() {
        let root = std::io::Error::other("disk on fire");
        assert_eq!(
            super::one_line(&Outer("t.tape", root)),
            "cannot read t.tape: disk on fire"
        );
        let repeated = Outer("x", std::io::Error::other("cannot read x"));
        assert_eq!(super::one_line(&repeated), "cannot read x");
    }

    #[test]
    fn io_causes_tell_the_failure() {
        use crate::ErrorKind;
        let wrapped = |kind| Outer("x", std::io::Error::from(kind));
        for (io, kind) in [
            (std::io::ErrorKind::ConnectionRefused, ErrorKind::Connect),
            (std::io::ErrorKind::TimedOut, ErrorKind::Timeout),
            (std::io::ErrorKind::BrokenPipe, ErrorKind::Reset),
            (std::io::ErrorKind::PermissionDenied, ErrorKind::Other),
        ] {
            assert_eq!(super::io_failure(&wrapped(io)), Some(kind));
        }
        assert_eq!(super::io_failure(&std::fmt::Error), None);
    }
}
