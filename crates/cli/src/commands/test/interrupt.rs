//! SIGINT and SIGTERM during `reprise test`: the replay stops (calls in
//! flight finish), the service and the mock are stopped as at the end,
//! the reports are written for what was replayed, and the run ends as an
//! error: nothing is left running in a namespace nobody can see.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use reprise_replay::StopHandle;
use rustix::process::{Pid, Signal};

/// Whether a signal came, and the replays it stops.
#[derive(Clone, Default)]
pub(crate) struct Interrupt {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    caught: AtomicBool,
    replays: Mutex<Vec<StopHandle>>,
    /// The process group of the service running now: a call it holds
    /// would keep the replay waiting for its timeout.
    service: Mutex<Option<Pid>>,
}

impl Interrupt {
    /// Catches SIGINT and SIGTERM from now on, on a thread of its own.
    pub(crate) fn catch() -> anyhow::Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal handler")?;
        let (mut terminate, mut interrupt) = {
            let _entered = runtime.enter();
            (
                signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            )
        };
        let caught = Interrupt::default();
        let inner = Arc::clone(&caught.inner);
        std::thread::Builder::new()
            .name("reprise-signals".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                });
                inner.caught.store(true, Ordering::SeqCst);
                eprintln!("reprise: interrupted: stopping the replay and the service");
                for replay in inner
                    .replays
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                {
                    replay.stop();
                }
                if let Some(group) = *inner.service.lock().unwrap_or_else(PoisonError::into_inner) {
                    let _ = rustix::process::kill_process_group(group, Signal::TERM);
                }
            })
            .context("cannot start the signal handler")?;
        Ok(caught)
    }

    /// Whether a signal came.
    pub(crate) fn caught(&self) -> bool {
        self.inner.caught.load(Ordering::SeqCst)
    }

    /// Sends SIGTERM to the process group `service` (a service running
    /// now) when a signal comes; `None` once it is stopped (its id may be
    /// reused).
    pub(crate) fn service(&self, service: Option<u32>) {
        let group = service
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        *self
            .inner
            .service
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = group;
        if let (Some(group), true) = (group, self.caught()) {
            let _ = rustix::process::kill_process_group(group, Signal::TERM);
        }
    }

    /// Stops `replay` when a signal comes (at once if one came).
    pub(crate) fn watch(&self, replay: StopHandle) {
        self.inner
            .replays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(replay.clone());
        if self.caught() {
            replay.stop();
        }
    }
}
