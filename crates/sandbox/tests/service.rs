//! The service process: waiting for its port, its early exit, its
//! teardown, and libfaketime.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reprise_sandbox::{Sandbox, SandboxError, SandboxOptions};
use support::{python, start};

const PORT: u16 = 18081;

fn sandbox() -> Sandbox {
    Sandbox::create(SandboxOptions::default().allow_port(PORT)).unwrap()
}

#[test]
fn a_service_that_never_opens_its_port_fails_the_wait_with_its_last_lines() {
    let sandbox = sandbox();
    let mut service = start(
        &sandbox,
        python("import time\nprint('starting on the wrong port', flush=True)\ntime.sleep(60)"),
    );
    support::eventually("the service printed", 10, || {
        !service.last_lines().is_empty()
    });
    let started = Instant::now();
    let error = service
        .wait_for_port(PORT, Duration::from_millis(1500))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(matches!(
        error,
        SandboxError::PortNeverOpened { port: PORT, .. }
    ));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("the service did not open port {PORT} within 1.5")),
        "{message}"
    );
    assert!(
        message.contains("| starting on the wrong port"),
        "{message}"
    );
    let status = service.stop(Duration::from_secs(5)).unwrap();
    assert_eq!(status.signal(), Some(15), "SIGTERM ends it: {status}");
}

#[test]
fn a_service_that_exits_early_fails_the_wait_with_its_status_and_last_lines() {
    let sandbox = sandbox();
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "echo loading config; echo 'config.toml: no such file' >&2; exit 3",
    ]);
    let mut service = start(&sandbox, command);
    let error = service
        .wait_for_port(PORT, Duration::from_secs(20))
        .unwrap_err();
    let SandboxError::ServiceExited {
        port,
        status,
        last_lines,
    } = &error
    else {
        panic!("not an early exit: {error}");
    };
    assert_eq!(*port, PORT);
    assert_eq!(status.code(), Some(3));
    assert_eq!(last_lines, &["loading config", "config.toml: no such file"]);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "the service exited before opening port {PORT} (exit status: 3)"
        )),
        "{message}"
    );
    assert!(
        message.contains("\n  | config.toml: no such file"),
        "{message}"
    );
}

#[test]
fn waiting_for_a_port_the_firewall_closes_is_refused() {
    let sandbox = sandbox();
    let mut service = start(&sandbox, python("import time; time.sleep(60)"));
    let error = service
        .wait_for_port(9999, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "port 9999 is not among the sandbox's allowed ports: connections to it are reported as escapes"
    );
}

#[test]
fn a_program_that_does_not_exist_is_a_clear_error() {
    let sandbox = sandbox();
    let error = sandbox
        .spawn(
            Command::new("/nonexistent/service"),
            reprise_sandbox::ServiceOptions::default(),
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot start the service `/nonexistent/service`: No such file"),
        "{error}"
    );
}

#[test]
fn stopping_the_service_ends_its_whole_process_group() {
    let sandbox = sandbox();
    let mut command = Command::new("sh");
    // A worker in the background, as a shell wrapper or a supervisor
    // starts one.
    command.args(["-c", "sleep 300 & echo $!; wait"]);
    let service = start(&sandbox, command);
    support::eventually("the worker's pid", 10, || !service.last_lines().is_empty());
    let worker: i32 = service.last_lines()[0].parse().unwrap();
    let status = service.stop(Duration::from_secs(5)).unwrap();
    assert!(status.signal().is_some(), "{status}");
    support::eventually("the worker is gone", 10, || {
        // Gone, or a zombie waiting for its new parent.
        std::fs::read_to_string(format!("/proc/{worker}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
    });
}

#[test]
fn the_service_output_goes_to_its_log_file_too() {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("service.log");
    let mut service = sandbox
        .spawn(
            python("print('one'); print('two')"),
            reprise_sandbox::ServiceOptions::default()
                .tail_lines(1)
                .log(&log),
        )
        .unwrap();
    service.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(service.last_lines(), ["two"]);
    drop(service);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn libfaketime_sets_the_services_clock_while_it_runs() {
    if let Err(e) = reprise_sandbox::locate_libfaketime() {
        eprintln!("skipped: {e} (scripts/setup-tests.sh installs it)");
        return;
    }
    let sandbox = sandbox();
    let first = UNIX_EPOCH + Duration::from_secs(1_577_872_800); // 2020-01-01 10:00 UTC
    let second = UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030-01-01 00:00 UTC
    let clock = sandbox.fake_clock(first).unwrap();

    // `date` sees the set time.
    let mut date = Command::new("date");
    date.arg("+%s");
    clock.apply(&mut date);
    let (status, lines) = support::run(&sandbox, date);
    assert!(status.success());
    let seen: u64 = lines[0].parse().unwrap();
    assert!((1_577_872_800..1_577_872_800 + 5).contains(&seen), "{seen}");

    // A running service sees the clock move when the file is rewritten.
    let mut watcher = python(
        "import time\n\
         print(int(time.time()), flush=True)\n\
         while time.time() < 1_800_000_000:\n    time.sleep(0.01)\n\
         print(int(time.time()), flush=True)",
    );
    clock.apply(&mut watcher);
    let mut service = start(&sandbox, watcher);
    support::eventually("the service read the clock", 10, || {
        !service.last_lines().is_empty()
    });
    clock.set(second).unwrap();
    let status = service.wait(Duration::from_secs(10)).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {:?}",
        service.last_lines()
    );
    let seen: Vec<u64> = service
        .last_lines()
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        (1_577_872_800..1_577_872_800 + 5).contains(&seen[0]),
        "{seen:?}"
    );
    assert!(
        (1_893_456_000..1_893_456_000 + 5).contains(&seen[1]),
        "{seen:?}"
    );
    assert!(SystemTime::now() < second, "the host's clock never moved");
}

#[test]
fn the_service_starts_in_reprises_folder_or_the_one_its_command_names() {
    let sandbox = sandbox();
    let (status, lines) = support::run(&sandbox, Command::new("pwd"));
    assert!(status.success());
    assert_eq!(
        lines,
        [std::env::current_dir().unwrap().display().to_string()]
    );
    let dir = tempfile::tempdir().unwrap();
    let mut pwd = Command::new("pwd");
    pwd.current_dir(dir.path());
    let (status, lines) = support::run(&sandbox, pwd);
    assert!(status.success());
    assert_eq!(lines, [dir.path().display().to_string()]);
}
