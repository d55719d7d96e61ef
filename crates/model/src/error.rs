//! Errors as people read them.

/// An error and its causes on one line, `outer: cause: root cause`,
/// without repeating a cause whose text an outer message already holds.
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
    line
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
}
