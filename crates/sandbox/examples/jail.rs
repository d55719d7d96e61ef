//! Runs one command in a sandbox and prints what it tried: the tests'
//! driver for the paths that need a process of their own (a user namespace
//! needs a single-threaded process; a seccomp filter stays with the
//! process).
//!
//! ```text
//! jail [--deny-namespaces] [--allow PORT]... [--dns NAME]... -- PROGRAM ARGS...
//! ```
//!
//! `--deny-namespaces` first installs a seccomp filter that makes
//! `unshare`, `setns` and `clone` with namespace flags fail with EPERM (as
//! a locked-down container does). Prints `service: LINE` for each line the
//! command printed and `escape: SENTENCE` for each attempt; exits 0 when
//! the command exited 0 and tried nothing, 1 when it tried something or
//! failed, 2 (with `error: MESSAGE`) when the sandbox could not be built.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::time::Duration;

use reprise_sandbox::{Sandbox, SandboxOptions, ServiceOptions};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut options = SandboxOptions::default();
    let mut deny = false;
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--deny-namespaces" => deny = true,
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
    eprintln!("error: {message}\nusage: jail [--deny-namespaces] [--allow PORT]... [--dns NAME]... -- PROGRAM ARGS...");
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
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
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
