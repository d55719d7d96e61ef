//! `reprise ca init|env` end to end: the real binary making a CA, refusing
//! to overwrite it, printing the variables, and the clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

mod support;
use support::*;

fn ca(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
    command.arg("ca").args(args);
    for var in ["REPRISE_CA_DIR", "XDG_DATA_HOME"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn init_makes_a_private_ca_once_and_env_prints_the_variables() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ca");
    let out = ca(&["init", "--dir", s(&dir)], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("eval \"$(reprise ca env --dir"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o600);
    let cert = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    // The bundle: the system's roots, then the CA.
    let bundle = std::fs::read_to_string(dir.join("bundle.pem")).unwrap();
    assert!(bundle.ends_with(&cert));
    if let Ok(system) = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt") {
        assert!(bundle.starts_with(&system));
    }

    // A second init refuses, and leaves the CA as it was.
    let out = ca(&["init", "--dir", s(&dir)], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already holds a reprise CA")
            && text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), cert);
    let out = ca(&["init", "--dir", s(&dir), "--force"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_ne!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), cert);

    // env, with the directory from REPRISE_CA_DIR.
    let out = ca(&["env"], &[("REPRISE_CA_DIR", s(&dir))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let env = text(&out.stdout);
    let bundle = dir.join("bundle.pem");
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    ] {
        assert!(
            env.contains(&format!("export {var}={}\n", bundle.display())),
            "{env}"
        );
    }
    assert!(env.contains(&format!(
        "export NODE_EXTRA_CA_CERTS={}\n",
        dir.join("ca.pem").display()
    )));
    assert!(env.contains("keytool -importcert -alias reprise"));
    // The lines are valid shell: sourcing them sets the variables.
    let shell = Command::new("sh")
        .args(["-c", &format!("{env}\necho \"$SSL_CERT_FILE\"")])
        .output()
        .unwrap();
    assert_eq!(text(&shell.stdout).trim(), bundle.to_str().unwrap());
}

#[test]
fn the_default_directory_follows_xdg_data_home() {
    let root = tempfile::tempdir().unwrap();
    let out = ca(&["init"], &[("XDG_DATA_HOME", s(root.path()))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(root.path().join("reprise/ca/ca-key.pem").exists());
    let out = ca(
        &["env", "--ca-dir", s(&root.path().join("reprise/ca"))],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn an_unusable_ca_directory_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    // No CA yet.
    let missing = root.path().join("none");
    let out = ca(&["env", "--dir", s(&missing)], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run `reprise ca init"),
        "{}",
        text(&out.stderr)
    );
    // A file where the directory should be (chmod 000 means nothing to
    // root, which the tests run as).
    let file = root.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for args in [["init", "--dir", s(&file)], ["env", "--dir", s(&file)]] {
        let out = ca(&args, &[]);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(
            err.contains(s(&file)) && err.contains("ot a directory"),
            "{err}"
        );
    }
    // A dangling symlink as the directory.
    let dangling = root.path().join("dangling");
    std::os::unix::fs::symlink(root.path().join("gone"), &dangling).unwrap();
    let out = ca(&["env", "--dir", s(&dangling)], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a symbolic link to nothing"),
        "{}",
        text(&out.stderr)
    );
    // A key with bad PEM.
    let dir = root.path().join("ca");
    assert_eq!(ca(&["init", "--dir", s(&dir)], &[]).status.code(), Some(0));
    std::fs::write(
        dir.join("ca-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nnot base64\n",
    )
    .unwrap();
    let out = ca(&["env", "--dir", s(&dir)], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ca-key.pem: not a PEM private key"),
        "{}",
        text(&out.stderr)
    );
}
