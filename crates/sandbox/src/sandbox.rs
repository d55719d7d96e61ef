//! The jail as one value: built by [`Sandbox::create`], torn down when
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crate::dns::{DnsStub, Names};
use crate::escapes::{EscapeLog, Escapes};
use crate::faketime::FakeClock;
use crate::mounts::{self, Hidden};
use crate::namespace::{Namespaces, Scope};
use crate::reporter::{self, Reporter};
use crate::service::{Service, ServiceOptions};
use crate::{SandboxError, files, firewall};

/// What the jail lets through and what it hides.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SandboxOptions {
    /// Loopback TCP ports the service may connect to (the mock's
    /// listeners) and that reprise may connect to (the service's own port,
    /// for the replay). Any other TCP connection is reported as an escape.
    pub allowed_ports: Vec<u16>,
    /// Names the DNS stub resolves to 127.0.0.1 (those the recording used);
    /// any other name is NXDOMAIN and reported. `localhost` always resolves.
    pub dns_names: Vec<String>,
    /// Folders covered by an empty tmpfs; [`mounts::DEFAULT_HIDDEN`] by
    /// default.
    pub hide: Vec<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            allowed_ports: Vec::new(),
            dns_names: Vec::new(),
            hide: mounts::DEFAULT_HIDDEN.iter().map(PathBuf::from).collect(),
        }
    }
}

impl SandboxOptions {
    /// Lets TCP to `127.0.0.1:PORT` (and `[::1]:PORT`) through.
    pub fn allow_port(mut self, port: u16) -> Self {
        self.allowed_ports.push(port);
        self
    }

    /// Resolves `name` to 127.0.0.1.
    pub fn dns_name(mut self, name: impl Into<String>) -> Self {
        self.dns_names.push(name.into());
        self
    }

    /// Hides `folder` too.
    pub fn hide(mut self, folder: impl Into<PathBuf>) -> Self {
        self.hide.push(folder.into());
        self
    }
}

/// What the sandbox's threads and its service share: the namespaces stay
/// alive while any of them holds this.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) namespaces: Namespaces,
    pub(crate) allowed_ports: Vec<u16>,
}

/// A network and mount namespace with everything but the allowed ports
/// closed, the escape reporter and the DNS stub running inside. Dropping it
/// stops them; the namespaces go when the last thread, process or
/// [`Service`] in them does.
#[derive(Debug)]
pub struct Sandbox {
    shared: std::sync::Arc<Shared>,
    log: EscapeLog,
    hidden: Hidden,
    /// The escape reporter's listening addresses.
    reporter: Vec<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
    // Last: removed after the keeper stopped using its files.
    workdir: tempfile::TempDir,
}

/// What the keeper thread hands back once the jail is built.
type Built = (Namespaces, Hidden, Vec<SocketAddr>);

impl Sandbox {
    /// Builds the jail: enters a new network and mount namespace on a
    /// thread of its own, brings up `lo` with a default route over it,
    /// loads the firewall, starts the reporter and the DNS stub, hides the
    /// host's sockets. Needs root, or [`crate::prepare_process`] to have
    /// entered a user namespace; else
    /// [`SandboxError::NamespacesNotPermitted`].
    pub fn create(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        if let Some(relative) = options.hide.iter().find(|p| !p.is_absolute()) {
            return Err(SandboxError::RelativeHiddenPath(relative.clone()));
        }
        let workdir = tempfile::Builder::new()
            .prefix("reprise-sandbox-")
            .tempdir()
            .map_err(|e| SandboxError::setup("create a private folder", e))?;
        let resolv_conf = workdir.path().join("resolv.conf");
        files::write_new(&resolv_conf, b"nameserver 127.0.0.1\n")?;
        let hosts = workdir.path().join("hosts");
        files::write_new(
            &hosts,
            b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        )?;

        let log = EscapeLog::default();
        let (built_tx, built_rx) = mpsc::channel::<Result<Built, SandboxError>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let names = Names::new(&options.dns_names);
        let allowed = options.allowed_ports.clone();
        let hide = options.hide.clone();
        let keeper_log = log.clone();
        let keeper = std::thread::Builder::new()
            .name("reprise-sandbox".to_owned())
            .spawn(move || {
                let built = build(&allowed, &hide, &resolv_conf, &hosts);
                let (namespaces, hidden, reporter, dns, runtime) = match built {
                    Ok(built) => built,
                    Err(e) => {
                        let _ = built_tx.send(Err(e));
                        return;
                    }
                };
                let addresses = reporter.addresses();
                if built_tx.send(Ok((namespaces, hidden, addresses))).is_err() {
                    return;
                }
                runtime.block_on(async move {
                    let reporter = tokio::spawn(reporter.run(keeper_log.clone()));
                    let dns = tokio::spawn(dns.run(names, keeper_log));
                    let _ = stopped.await;
                    reporter.abort();
                    dns.abort();
                });
            })
            .map_err(|e| SandboxError::setup("start the sandbox's thread", e))?;
        let (namespaces, hidden, reporter) = match built_rx.recv() {
            Ok(built) => built?,
            Err(_) => return Err(SandboxError::ThreadLost),
        };
        Ok(Sandbox {
            shared: std::sync::Arc::new(Shared {
                namespaces,
                allowed_ports: options.allowed_ports,
            }),
            log,
            hidden,
            reporter,
            stop: Some(stop),
            keeper: Some(keeper),
            workdir,
        })
    }

    /// The loopback ports let through.
    pub fn allowed_ports(&self) -> &[u16] {
        &self.shared.allowed_ports
    }

    /// The escape reporter's addresses (closed connections arrive there).
    pub fn reporter_addresses(&self) -> &[SocketAddr] {
        &self.reporter
    }

    /// What the mount namespace hides.
    pub fn hidden(&self) -> &Hidden {
        &self.hidden
    }

    /// The sandbox's private folder (mode 0700; removed when it is dropped).
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// Runs `f` on a thread that joined the namespaces `scope` names, and
    /// returns its result. The calling thread never moves.
    pub fn run_inside<T, F>(&self, scope: Scope, f: F) -> Result<T, SandboxError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.shared.namespaces.run_inside(scope, f)
    }

    /// Binds a TCP listener inside the network namespace (for the mock: the
    /// service reaches it if its port is allowed).
    pub fn listen_tcp(&self, address: SocketAddr) -> Result<std::net::TcpListener, SandboxError> {
        self.run_inside(Scope::Network, || std::net::TcpListener::bind(address))?
            .map_err(|e| SandboxError::setup(format!("listen on {address} in the sandbox"), e))
    }

    /// Starts a thread inside the network namespace running `f`. Threads
    /// it starts are inside too: build a tokio runtime in `f` and its
    /// workers' sockets (the mock's listeners, the replay's connections)
    /// live in the sandbox.
    pub fn spawn_thread<T, F>(&self, name: &str, f: F) -> Result<JoinHandle<T>, SandboxError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = name.to_owned();
        self.run_inside(Scope::Network, move || {
            std::thread::Builder::new().name(name).spawn(f)
        })?
        .map_err(|e| SandboxError::setup("start a thread in the sandbox", e))
    }

    /// Starts `command` in the sandbox (network and mount namespace), in a
    /// process group of its own, stdin closed, its output kept as
    /// `options` says. The caller sets its environment and arguments; its
    /// working folder is reprise's unless set.
    pub fn spawn(
        &self,
        command: Command,
        options: ServiceOptions,
    ) -> Result<Service, SandboxError> {
        Service::spawn(std::sync::Arc::clone(&self.shared), command, options)
    }

    /// A clock for a service, in the sandbox's folder, set to `start`:
    /// apply it to the service's command with [`FakeClock::apply`].
    pub fn fake_clock(&self, start: SystemTime) -> Result<FakeClock, SandboxError> {
        FakeClock::create(&self.workdir.path().join("faketime"), start)
    }

    /// Every attempt closed so far: TCP destinations (every connection
    /// that reached the reporter before this call, none left in its
    /// queue), DNS names, and the UDP packets dropped (the firewall's
    /// counter).
    pub fn escapes(&self) -> Result<Escapes, SandboxError> {
        let udp_dropped = self.run_inside(Scope::Network, || {
            reporter::flush(&self.reporter);
            firewall::udp_dropped()
        })??;
        let mut escapes = self.log.snapshot();
        escapes.udp_dropped = udp_dropped;
        Ok(escapes)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// Builds the jail on the calling thread (the keeper), which stays inside.
fn build(
    allowed: &[u16],
    hide: &[PathBuf],
    resolv_conf: &Path,
    hosts: &Path,
) -> Result<
    (
        Namespaces,
        Hidden,
        Reporter,
        DnsStub,
        tokio::runtime::Runtime,
    ),
    SandboxError,
> {
    let namespaces = Namespaces::enter_new()?;
    firewall::bring_up_loopback()?;
    let reporter = Reporter::bind(allowed)
        .map_err(|e| SandboxError::setup("listen for escape attempts", e))?;
    let dns = DnsStub::bind()
        .map_err(|e| SandboxError::setup("listen on 127.0.0.1:53 for the DNS stub", e))?;
    firewall::load(&firewall::ruleset(allowed, reporter.port()))?;
    let hidden = mounts::build(hide, resolv_conf, hosts)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SandboxError::setup("start the reporter's runtime", e))?;
    Ok((namespaces, hidden, reporter, dns, runtime))
}
