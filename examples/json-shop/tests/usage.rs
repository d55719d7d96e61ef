//! The binary's bad-input paths: each a clear one-line error and a
//! non-zero exit, never a panic.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_json-shop"));
    command
        .args(args)
        .env_remove("REPRISE_MODE")
        .env_remove("REPRISE_TAPE");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Arguments, environment, what the error says.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_arguments_and_settings_are_named() {
    let cases: [Case; 5] = [
        (&[], &[], "usage: json-shop"),
        (&["pantry", "127.0.0.1:0"], &[], "usage: json-shop"),
        (
            &["inventory", "not-an-address"],
            &[],
            "cannot listen on not-an-address",
        ),
        (
            &["shop", "127.0.0.1:0", "127.0.0.1:9"],
            &[("REPRISE_MODE", "replay")],
            "REPRISE_MODE",
        ),
        (
            &["shop", "127.0.0.1:0", "127.0.0.1:9"],
            &[("REPRISE_MODE", "mock")],
            "needs REPRISE_TAPE",
        ),
    ];
    for (args, env, says) in cases {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("json-shop: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
