//! Secrets in commands, replaced before anything is kept: AUTH's
//! arguments, HELLO's `AUTH user pass`, MIGRATE's `AUTH`/`AUTH2`,
//! `CONFIG SET requirepass|masterauth` values and ACL SETUSER password
//! rules become reprise's redaction marker.

use reprise_model::redact::MARKER;

/// Replaces the secrets among `args` (the command's name first) with the
/// marker, in place; true when something was replaced. Idempotent: the
/// mock applies it to live commands to match recorded ones.
pub fn redact_command(args: &mut [Vec<u8>]) -> bool {
    let Some((name, rest)) = args.split_first_mut() else {
        return false;
    };
    let is = |arg: &[u8], word: &str| arg.eq_ignore_ascii_case(word.as_bytes());
    let mut redacted = false;
    let mut hide = |arg: &mut Vec<u8>| {
        if arg.as_slice() != MARKER.as_bytes() {
            *arg = MARKER.as_bytes().to_vec();
        }
        redacted = true;
    };
    if is(name, "AUTH") {
        rest.iter_mut().for_each(&mut hide);
    } else if is(name, "HELLO") || is(name, "MIGRATE") {
        // HELLO protover [AUTH user pass] [SETNAME name];
        // MIGRATE host port key db timeout [COPY] [REPLACE]
        //   [AUTH pass | AUTH2 user pass] [KEYS key...]
        let from = if is(name, "HELLO") { 1 } else { 5 };
        let mut i = from;
        while i < rest.len() {
            let secrets = match rest.get(i) {
                Some(a) if is(a, "AUTH") && is(name, "HELLO") => 2,
                Some(a) if is(a, "AUTH") => 1,
                Some(a) if is(a, "AUTH2") => 2,
                Some(a) if is(a, "KEYS") && is(name, "MIGRATE") => break,
                _ => 0,
            };
            for arg in rest.iter_mut().skip(i + 1).take(secrets) {
                hide(arg);
            }
            i += 1 + secrets;
        }
    } else if is(name, "CONFIG") && rest.first().is_some_and(|s| is(s, "SET")) {
        let mut pairs = rest.iter_mut().skip(1);
        while let (Some(param), Some(value)) = (pairs.next(), pairs.next()) {
            if is(param, "requirepass") || is(param, "masterauth") {
                hide(value);
            }
        }
    } else if is(name, "ACL") && rest.first().is_some_and(|s| is(s, "SETUSER")) {
        for rule in rest.iter_mut().skip(2) {
            if matches!(rule.first(), Some(b'>' | b'<' | b'#' | b'!')) {
                hide(rule);
            }
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn redacted(list: &[&str]) -> Vec<String> {
        let mut args: Vec<Vec<u8>> = list.iter().map(|a| a.as_bytes().to_vec()).collect();
        redact_command(&mut args);
        args.into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect()
    }

    #[test]
    fn auth_and_hello() {
        assert_eq!(redacted(&["AUTH", "s3cret"]), ["AUTH", MARKER]);
        assert_eq!(
            redacted(&["auth", "user", "s3cret"]),
            ["auth", MARKER, MARKER]
        );
        assert_eq!(
            redacted(&["HELLO", "3", "auth", "default", "s3cret", "SETNAME", "app"]),
            ["HELLO", "3", "auth", MARKER, MARKER, "SETNAME", "app"]
        );
        assert_eq!(redacted(&["HELLO", "3"]), ["HELLO", "3"]);
        assert_eq!(redacted(&["HELLO", "3", "AUTH"]), ["HELLO", "3", "AUTH"]);
    }

    #[test]
    fn other_secrets() {
        assert_eq!(
            redacted(&[
                "MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "u", "p", "KEYS", "AUTH", "x"
            ]),
            [
                "MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", MARKER, MARKER, "KEYS", "AUTH",
                "x"
            ]
        );
        assert_eq!(
            redacted(&["CONFIG", "SET", "maxmemory", "1mb", "requirepass", "p"]),
            ["CONFIG", "SET", "maxmemory", "1mb", "requirepass", MARKER]
        );
        assert_eq!(
            redacted(&["ACL", "SETUSER", "bob", "on", ">pw", "~*"]),
            ["ACL", "SETUSER", "bob", "on", MARKER, "~*"]
        );
        assert_eq!(redacted(&["GET", "AUTH"]), ["GET", "AUTH"]);
    }

    #[test]
    fn redaction_is_idempotent() {
        let once = redacted(&["AUTH", "pw"]);
        let refs: Vec<&str> = once.iter().map(String::as_str).collect();
        assert_eq!(redacted(&refs), once);
    }
}
