//! The namespace paths that need a process of their own: as root, as an
//! unprivileged user (`nobody`, through an unprivileged user namespace),
//! and where namespaces are not permitted (a seccomp filter, as a locked
//! down container has). A user namespace needs a single-threaded process
//! and a seccomp filter stays with its process, so this test has its own
//! `main`: each case runs this binary again as `driver`, which builds a
//! sandbox around one command:
//!
//! ```text
//! namespaces driver [--deny-namespaces] [--late] [--allow PORT]... [--dns NAME]... -- PROGRAM ARGS...
//! ```
//!
//! `--deny-namespaces` first installs a seccomp filter that makes
//! `unshare`, `setns` and `clone` with namespace flags fail with EPERM;
//! `--late` starts a thread before `prepare_process`. The driver prints
//! `service: LINE` for each line the command printed and `escape: SENTENCE`
//! for each attempt; it exits 0 when the command exited 0 and tried
//! nothing, 1 when it tried something or failed, 2 (with `error: MESSAGE`)
//! when the sandbox could not be built: what `reprise test` does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::time::Duration;

use reprise_sandbox::{Sandbox, SandboxOptions, ServiceOptions};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("driver") {
        return driver(args);
    }
    cases::run_all()
}

fn driver(mut args: impl Iterator<Item = String>) -> ExitCode {
    let mut options = SandboxOptions::default();
    let mut deny = false;
    let mut late = false;
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--deny-namespaces" => deny = true,
            "--late" => late = true,
            "--allow" => match args.next().and_then(|p| p.parse().ok()) {
                Some(port) => options = options.allow_port(port),
                None => return usage("--allow needs a port"),
            },
            "--dns" => match args.next() {
                Some(name) => options = options.dns_name(name),
                None => return usage("--dns needs a name"),
            },
            "--" => {
                command.extend(args.by_ref());
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let Some((program, program_args)) = command.split_first() else {
        return usage("no command after --");
    };
    if deny && let Err(e) = deny_namespaces() {
        eprintln!("error: cannot install the seccomp filter: {e}");
        return ExitCode::from(2);
    }
    // A runtime started before prepare_process, as a binary that forgot
    // the order would have.
    let _thread = late.then(|| std::thread::spawn(std::thread::park));
    match run(options, program, program_args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(
    options: SandboxOptions,
    program: &str,
    args: &[String],
) -> Result<ExitCode, reprise_sandbox::SandboxError> {
    reprise_sandbox::prepare_process()?;
    let sandbox = Sandbox::create(options)?;
    let mut command = Command::new(program);
    command.args(args);
    let mut service = sandbox.spawn(command, ServiceOptions::default().tail_lines(100))?;
    let status = service.wait(Duration::from_secs(60))?;
    for line in service.last_lines() {
        println!("service: {line}");
    }
    let escapes = sandbox.escapes()?;
    for line in escapes.messages() {
        println!("escape: {line}");
    }
    let clean = status.is_some_and(|s| s.success()) && escapes.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "error: {message}\nusage: namespaces driver [--deny-namespaces] [--late] [--allow PORT]... [--dns NAME]... -- PROGRAM ARGS..."
    );
    ExitCode::from(2)
}

/// What a container that forbids namespaces does: `unshare`, `setns` and
/// `clone` with a namespace flag fail with EPERM; `clone3` (whose flags a
/// filter cannot read) fails with ENOSYS, so the C library falls back to
/// `clone`.
fn deny_namespaces() -> Result<(), seccompiler::Error> {
    let arch = std::env::consts::ARCH.try_into()?;
    let namespace_flags = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ];
    let clone_rules = namespace_flags
        .iter()
        .map(|flag| {
            let flag = *flag as u64;
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let denied = BTreeMap::from([
        (libc::SYS_unshare, vec![]),
        (libc::SYS_setns, vec![]),
        (libc::SYS_clone, clone_rules),
    ]);
    let no_clone3 = BTreeMap::from([(libc::SYS_clone3, vec![])]);
    let filters = [
        SeccompFilter::new(
            no_clone3,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )?,
        SeccompFilter::new(
            denied,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )?,
    ];
    for filter in filters {
        let program: seccompiler::BpfProgram = filter.try_into()?;
        seccompiler::apply_filter(&program)?;
    }
    Ok(())
}

/// The cases, each running this binary again as the driver.
mod cases {
    use std::path::PathBuf;
    use std::process::{Command, ExitCode, Output, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    const NOBODY: &str = "65534";
    /// Only what a plain user may run: not a root-only pyenv shim.
    const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
    const NOT_PERMITTED: &str = "error: reprise test needs root or unprivileged user namespaces \
         (kernel.unprivileged_userns_clone / user.max_user_namespaces): Operation not permitted (os error 1)";
    const ESCAPE: &str = r#"
import socket
c = socket.create_connection(("10.1.2.3", 5432), timeout=5)
print("closed" if c.recv(10) == b"" else "data")
print(socket.gethostbyname("payments.internal"))
"#;

    /// A case: `Ok(None)` passed, `Ok(Some(why))` skipped, `Err(why)` failed.
    type Case = (&'static str, fn() -> Result<Option<String>, String>);

    pub fn run_all() -> ExitCode {
        let cases: [Case; 6] = [
            (
                "as_root_an_escape_is_reported",
                as_root_an_escape_is_reported,
            ),
            (
                "where_namespaces_are_not_permitted_the_error_is_clear_and_the_exit_2",
                where_namespaces_are_not_permitted_the_error_is_clear,
            ),
            (
                "without_ip_on_the_path_the_error_names_its_package",
                without_ip_on_the_path_the_error_names_its_package,
            ),
            (
                "as_nobody_the_sandbox_is_built_in_a_user_namespace",
                as_nobody_the_sandbox_is_built_in_a_user_namespace,
            ),
            (
                "as_nobody_where_user_namespaces_are_not_permitted_the_error_is_clear",
                as_nobody_where_user_namespaces_are_not_permitted,
            ),
            (
                "as_nobody_a_process_that_started_a_thread_first_is_told_so",
                as_nobody_a_process_that_started_a_thread_first_is_told_so,
            ),
        ];
        // libtest's lines, so the suite's tally (scripts/test.sh) counts
        // these cases with the others.
        println!("\nrunning {} tests", cases.len());
        let started = std::time::Instant::now();
        let (mut passed, mut failed, mut ignored) = (0, 0, 0);
        for (name, case) in cases {
            match case() {
                Ok(None) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Ok(Some(why)) => {
                    println!("test {name} ... ignored, {why}");
                    ignored += 1;
                }
                Err(why) => {
                    println!("test {name} ... FAILED\n{why}");
                    failed += 1;
                }
            }
        }
        let verdict = if failed == 0 { "ok" } else { "FAILED" };
        println!(
            "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; \
             0 filtered out; finished in {:.2}s\n",
            started.elapsed().as_secs_f64()
        );
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn as_root_an_escape_is_reported() -> Result<Option<String>, String> {
        let output = driver(
            None,
            &["--dns", "payments.internal", "--", "python3", "-c", ESCAPE],
        )?;
        expect_escape(&output)
    }

    fn where_namespaces_are_not_permitted_the_error_is_clear() -> Result<Option<String>, String> {
        let output = driver(None, &["--deny-namespaces", "--", "true"])?;
        expect_error(&output, NOT_PERMITTED)
    }

    fn without_ip_on_the_path_the_error_names_its_package() -> Result<Option<String>, String> {
        let output = driver_with(None, &["--", "true"], Some("/nonexistent"))?;
        expect_error(
            &output,
            "error: ip is needed to build the sandbox (Debian package iproute2): \
             No such file or directory (os error 2)",
        )
    }

    fn as_nobody_the_sandbox_is_built_in_a_user_namespace() -> Result<Option<String>, String> {
        let user = match nobody() {
            Ok(user) => user,
            Err(why) => return Ok(Some(why)),
        };
        let output = driver(
            Some(user),
            &["--dns", "payments.internal", "--", "python3", "-c", ESCAPE],
        )?;
        expect_escape(&output)
    }

    fn as_nobody_where_user_namespaces_are_not_permitted() -> Result<Option<String>, String> {
        let user = match nobody() {
            Ok(user) => user,
            Err(why) => return Ok(Some(why)),
        };
        let output = driver(Some(user), &["--deny-namespaces", "--", "true"])?;
        expect_error(&output, NOT_PERMITTED)
    }

    fn as_nobody_a_process_that_started_a_thread_first_is_told_so() -> Result<Option<String>, String>
    {
        let user = match nobody() {
            Ok(user) => user,
            Err(why) => return Ok(Some(why)),
        };
        let output = driver(Some(user), &["--late", "--", "true"])?;
        expect_error(
            &output,
            "error: the sandbox's user namespace must be entered before any thread starts \
             (call reprise_sandbox::prepare_process first in main): Invalid argument (os error 22)",
        )
    }

    fn expect_escape(output: &Output) -> Result<Option<String>, String> {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let want = "service: closed\nservice: 127.0.0.1\n\
                    escape: the service tried to reach 10.1.2.3:5432 directly\n";
        if output.status.code() == Some(1) && stdout == want {
            Ok(None)
        } else {
            Err(describe("exit 1 and one escape", output))
        }
    }

    fn expect_error(output: &Output, message: &str) -> Result<Option<String>, String> {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(2) && stderr.trim_end() == message {
            Ok(None)
        } else {
            Err(describe(&format!("exit 2 and {message:?}"), output))
        }
    }

    fn describe(want: &str, output: &Output) -> String {
        format!(
            "  want {want}\n  got {}\n  stdout: {}\n  stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// `setpriv` arguments that run a command as nobody, when this machine
    /// can: root to switch, setpriv installed, and this binary reachable by
    /// nobody (not under a private home). Says why when not.
    fn nobody() -> Result<[String; 4], String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let args = [
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ];
        let reachable = Command::new("setpriv")
            .args(&args)
            .args(["test", "-x"])
            .arg(&me)
            .env("PATH", PATH)
            .status()
            .is_ok_and(|s| s.success());
        if !reachable {
            return Err(format!(
                "cannot run {} as nobody (setpriv missing, not root, or a private folder)",
                me.display()
            ));
        }
        Ok(args)
    }

    /// Runs this binary as the driver (as nobody when `user` says so), for
    /// at most a minute: nothing may hang.
    fn driver(user: Option<[String; 4]>, args: &[&str]) -> Result<Output, String> {
        driver_with(user, args, None)
    }

    /// [`driver`] with its `PATH` set to `path`.
    fn driver_with(
        user: Option<[String; 4]>,
        args: &[&str],
        path: Option<&str>,
    ) -> Result<Output, String> {
        let me: PathBuf = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = match &user {
            Some(setpriv) => {
                let mut command = Command::new("setpriv");
                command.args(setpriv).arg(&me);
                command
            }
            None => Command::new(&me),
        };
        command
            .arg("driver")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if user.is_some() {
            // Nobody may not read this folder: start from /.
            command
                .env("PATH", PATH)
                .env("TMPDIR", "/tmp")
                .current_dir("/");
        }
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run the driver: {e}"))?;
        let pid = child.id();
        let (done, output) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        match output.recv_timeout(Duration::from_secs(60)) {
            Ok(output) => output.map_err(|e| e.to_string()),
            Err(_) => {
                if let Some(pid) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                Err("the driver hung for a minute".to_owned())
            }
        }
    }
}
