//! [`LinkRegistry`]: which inbound exchange a downstream call served, told
//! by the W3C trace id both carry. The inbound side registers each
//! exchange's trace id when it starts and when it finishes; a downstream
//! call asks with the trace id of its `traceparent`. Pure logic: the
//! caller passes the time, so tests drive the clock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Inbound exchanges remembered at most (in flight or within the window);
/// about 100 bytes each. Past it, the oldest finished one is forgotten
/// early, or, when all are in flight, the new one is not registered (its
/// downstream calls are then stored unlinked) and counted.
pub const LINKS_MAX: usize = 100_000;

/// The default `--link-window`: how long after an inbound exchange finished
/// a downstream call carrying its trace id is still its child.
pub const DEFAULT_LINK_WINDOW: Duration = Duration::from_secs(30);

/// What a downstream call's trace id says about its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAnswer {
    /// One inbound exchange with that trace id is in flight, or finished
    /// within the window: the call is its child.
    Child {
        /// The inbound exchange's id.
        parent_id: [u8; 16],
        /// The call's index among that parent's downstream calls, in the
        /// order they asked (started).
        order: u32,
        /// Whether the parent is recorded (sampling follows the parent).
        sampled: bool,
    },
    /// Two or more inbound exchanges with that trace id overlapped (a
    /// retry, a gateway calling twice), or several finished within the
    /// window and none is in flight: never given to one of them.
    Ambiguous,
    /// No inbound exchange with that trace id is known.
    Unknown,
    /// The call carried no trace context (no `traceparent`, or a
    /// malformed one).
    None,
}

/// One inbound exchange with a trace id.
#[derive(Debug)]
struct Parent {
    id: [u8; 16],
    finished: Option<Instant>,
    children: u32,
    sampled: bool,
    /// Another inbound exchange with the same trace id was in flight at
    /// the same time.
    overlapped: bool,
}

/// Inbound exchanges by trace id, with the finished ones in the order they
/// finished, to forget them once the window has passed.
#[derive(Debug, Default)]
struct Table {
    traces: HashMap<[u8; 16], Vec<Parent>, foldhash::fast::RandomState>,
    /// (when it finished, trace id, exchange id), oldest first.
    finished: VecDeque<(Instant, [u8; 16], [u8; 16])>,
    parents: usize,
    /// How many exchanges are in flight, and the XOR of their ids and of
    /// their trace ids: when one is, these are its own (an O(1) answer
    /// to "which one?", whatever the table's size).
    in_flight: usize,
    in_flight_ids: u128,
    in_flight_traces: u128,
}

impl Table {
    fn toggle_in_flight(&mut self, trace: [u8; 16], id: [u8; 16]) {
        self.in_flight_ids ^= u128::from_ne_bytes(id);
        self.in_flight_traces ^= u128::from_ne_bytes(trace);
    }
}

impl Table {
    fn forget(&mut self, trace: [u8; 16], id: [u8; 16]) {
        if let Some(parents) = self.traces.get_mut(&trace) {
            let before = parents.len();
            parents.retain(|p| p.id != id);
            self.parents -= before - parents.len();
            if parents.is_empty() {
                self.traces.remove(&trace);
            }
        }
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(at, trace, id)) = self.finished.front() {
            if now.saturating_duration_since(at) < window {
                break;
            }
            self.finished.pop_front();
            self.forget(trace, id);
        }
    }
}

/// Inbound exchanges in flight or finished within the window, by trace
/// id. One lock around a map: a call takes it twice (start, finish) and
/// each of its downstream calls once, for a hash lookup.
#[derive(Debug)]
pub struct LinkRegistry {
    window: Duration,
    max: usize,
    table: Mutex<Table>,
    /// Inbound exchanges not registered because [`LINKS_MAX`] were in
    /// flight.
    full: AtomicU64,
}

impl LinkRegistry {
    /// A registry keeping finished exchanges for `window`, and at most
    /// [`LINKS_MAX`] exchanges.
    pub fn new(window: Duration) -> LinkRegistry {
        LinkRegistry::with_max(window, LINKS_MAX)
    }

    /// As [`LinkRegistry::new`], with at most `max` exchanges.
    pub fn with_max(window: Duration, max: usize) -> LinkRegistry {
        LinkRegistry {
            window,
            max: max.max(1),
            table: Mutex::new(Table::default()),
            full: AtomicU64::new(0),
        }
    }

    /// How long finished exchanges are remembered.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Inbound exchanges not registered because the registry was full of
    /// exchanges in flight.
    pub fn not_registered(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Inbound exchanges remembered now.
    pub fn len(&self) -> usize {
        self.lock().parents
    }

    /// Whether no exchange is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The inbound exchange `id` with trace id `trace` started at `now`;
    /// `sampled`: whether it is recorded. Returns whether it was
    /// registered (false: the registry is full of exchanges in flight).
    pub fn start(&self, trace: [u8; 16], id: [u8; 16], sampled: bool, now: Instant) -> bool {
        let mut table = self.lock();
        table.expire(now, self.window);
        if table.parents >= self.max {
            // The oldest finished one goes first, window or not.
            if let Some((_, old_trace, old_id)) = table.finished.pop_front() {
                table.forget(old_trace, old_id);
            } else {
                self.full.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let parents = table.traces.entry(trace).or_default();
        let mut overlapped = false;
        for other in parents.iter_mut().filter(|p| p.finished.is_none()) {
            other.overlapped = true;
            overlapped = true;
        }
        parents.push(Parent {
            id,
            finished: None,
            children: 0,
            sampled,
            overlapped,
        });
        table.parents += 1;
        table.in_flight += 1;
        table.toggle_in_flight(trace, id);
        true
    }

    /// The inbound exchange `id` with trace id `trace` finished at `now`.
    pub fn finish(&self, trace: [u8; 16], id: [u8; 16], now: Instant) {
        let mut table = self.lock();
        let Some(parent) = table
            .traces
            .get_mut(&trace)
            .and_then(|parents| parents.iter_mut().find(|p| p.id == id))
        else {
            return;
        };
        if parent.finished.is_some() {
            return;
        }
        parent.finished = Some(now);
        table.in_flight -= 1;
        table.toggle_in_flight(trace, id);
        table.finished.push_back((now, trace, id));
        table.expire(now, self.window);
    }

    /// Links a downstream call starting now whose `traceparent` carries
    /// `trace` ([`LinkRegistry::child`]), counted in `metrics`: its
    /// parent (when one was found) and its link; `None` when its parent
    /// was sampled out, so it is not recorded either (counted too). A call
    /// with no parent is for the caller to sample on its own id.
    pub fn link_by_trace(
        &self,
        trace: Option<[u8; 16]>,
        metrics: &crate::Metrics,
    ) -> Option<(Option<[u8; 16]>, reprise_model::Link)> {
        use reprise_model::LinkKind;
        let egress = &metrics.egress;
        let link = |kind: LinkKind, order: u32| reprise_model::Link {
            kind: kind as i32,
            order,
        };
        match self.child(trace, Instant::now()) {
            LinkAnswer::Child {
                parent_id,
                order,
                sampled,
            } => {
                if !sampled {
                    // Sampling follows the parent: none of its calls.
                    egress.parent_sampled_out.inc();
                    metrics.sampled_out.inc();
                    return None;
                }
                egress.linked.inc();
                Some((Some(parent_id), link(LinkKind::Trace, order)))
            }
            LinkAnswer::Ambiguous => {
                egress.ambiguous.inc();
                Some((None, link(LinkKind::Ambiguous, 0)))
            }
            LinkAnswer::Unknown => {
                egress.unknown_trace.inc();
                Some((None, link(LinkKind::Unlinked, 0)))
            }
            LinkAnswer::None => {
                egress.unlinked.inc();
                Some((None, link(LinkKind::Unlinked, 0)))
            }
        }
    }

    /// The parent of a downstream call starting at `now` whose
    /// `traceparent` carries `trace` (`None`: no or a malformed one).
    pub fn child(&self, trace: Option<[u8; 16]>, now: Instant) -> LinkAnswer {
        let Some(trace) = trace else {
            return LinkAnswer::None;
        };
        let mut table = self.lock();
        table.expire(now, self.window);
        let Some(parents) = table.traces.get_mut(&trace) else {
            return LinkAnswer::Unknown;
        };
        let in_flight = parents.iter().filter(|p| p.finished.is_none()).count();
        let candidates = |p: &&mut Parent| in_flight == 0 || p.finished.is_none();
        let mut found = parents.iter_mut().filter(candidates);
        let (Some(parent), None) = (found.next(), found.next()) else {
            return LinkAnswer::Ambiguous;
        };
        if parent.overlapped {
            return LinkAnswer::Ambiguous;
        }
        let order = parent.children;
        parent.children = parent.children.saturating_add(1);
        LinkAnswer::Child {
            parent_id: parent.id,
            order,
            sampled: parent.sampled,
        }
    }
}

/// Which inbound exchanges are in flight ([`LinkRegistry::in_flight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// None.
    Nothing,
    /// Exactly one: its trace id and id.
    One {
        /// Its trace id.
        trace: [u8; 16],
        /// Its exchange id.
        id: [u8; 16],
    },
    /// Two or more.
    Several,
}

impl LinkRegistry {
    /// Which inbound exchanges are in flight now: what a call without
    /// trace context (a database or cache call) can be linked by, taken
    /// when its first byte arrives. Exact only when the service serves one
    /// call at a time: with one in flight, the call may still come from a
    /// task another call left running.
    pub fn in_flight(&self) -> InFlight {
        let table = self.lock();
        match table.in_flight {
            0 => InFlight::Nothing,
            1 => InFlight::One {
                trace: table.in_flight_traces.to_ne_bytes(),
                id: table.in_flight_ids.to_ne_bytes(),
            },
            _ => InFlight::Several,
        }
    }

    /// Makes a call the next child of the inbound exchange `id` (trace
    /// `trace`), seen in flight by [`LinkRegistry::in_flight`]: its order
    /// among that exchange's downstream calls, and whether the exchange is
    /// recorded. `None` once the exchange is forgotten (its window passed).
    pub fn adopt(&self, trace: [u8; 16], id: [u8; 16]) -> Option<(u32, bool)> {
        let mut table = self.lock();
        let parent = table
            .traces
            .get_mut(&trace)?
            .iter_mut()
            .find(|p| p.id == id)?;
        let order = parent.children;
        parent.children = parent.children.saturating_add(1);
        Some((order, parent.sampled))
    }
}

/// An inbound exchange registered in a [`LinkRegistry`]: finishes it
/// there when dropped.
#[derive(Debug)]
pub struct InboundLink {
    links: std::sync::Arc<LinkRegistry>,
    trace: [u8; 16],
    id: [u8; 16],
}

impl InboundLink {
    /// Registers the inbound exchange `id` with trace id `trace`, started
    /// now; `None` when the registry is full (see [`LINKS_MAX`]).
    pub fn start(
        links: &std::sync::Arc<LinkRegistry>,
        trace: [u8; 16],
        id: [u8; 16],
        sampled: bool,
    ) -> Option<InboundLink> {
        links
            .start(trace, id, sampled, Instant::now())
            .then(|| InboundLink {
                links: std::sync::Arc::clone(links),
                trace,
                id,
            })
    }
}

impl Drop for InboundLink {
    fn drop(&mut self) {
        self.links.finish(self.trace, self.id, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(30);

    fn child(parent: u8, order: u32) -> LinkAnswer {
        LinkAnswer::Child {
            parent_id: [parent; 16],
            order,
            sampled: true,
        }
    }

    #[test]
    fn children_of_an_exchange_in_flight_are_linked_in_order() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        assert!(links.start([1; 16], [10; 16], true, t0));
        assert!(links.start([2; 16], [20; 16], true, t0));
        assert_eq!(links.child(Some([1; 16]), t0), child(10, 0));
        assert_eq!(links.child(Some([2; 16]), t0), child(20, 0));
        assert_eq!(links.child(Some([1; 16]), t0), child(10, 1));
        assert_eq!(links.len(), 2);
    }

    #[test]
    fn a_call_without_trace_context_sees_which_exchanges_are_in_flight() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        assert_eq!(links.in_flight(), InFlight::Nothing);
        links.start([1; 16], [10; 16], true, t0);
        let one = InFlight::One {
            trace: [1; 16],
            id: [10; 16],
        };
        assert_eq!(links.in_flight(), one);
        // Its order is shared with the calls its trace id linked.
        assert_eq!(links.child(Some([1; 16]), t0), child(10, 0));
        assert_eq!(links.adopt([1; 16], [10; 16]), Some((1, true)));
        links.start([2; 16], [20; 16], false, t0);
        assert_eq!(links.in_flight(), InFlight::Several);
        links.finish([1; 16], [10; 16], t0);
        assert_eq!(
            links.in_flight(),
            InFlight::One {
                trace: [2; 16],
                id: [20; 16]
            }
        );
        assert_eq!(links.adopt([2; 16], [20; 16]), Some((0, false)));
        // A finished exchange is not in flight, window or not; once
        // forgotten it adopts no more.
        links.finish([2; 16], [20; 16], t0);
        assert_eq!(links.in_flight(), InFlight::Nothing);
        links.start([3; 16], [30; 16], true, t0 + WINDOW);
        assert_eq!(links.adopt([2; 16], [20; 16]), None);
        assert_eq!(
            links.in_flight(),
            InFlight::One {
                trace: [3; 16],
                id: [30; 16]
            }
        );
    }

    #[test]
    fn no_trace_and_unknown_traces_are_told_apart() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        links.start([1; 16], [10; 16], true, t0);
        assert_eq!(links.child(None, t0), LinkAnswer::None);
        assert_eq!(links.child(Some([9; 16]), t0), LinkAnswer::Unknown);
    }

    #[test]
    fn a_finished_exchange_keeps_its_children_for_the_window_only() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        links.start([1; 16], [10; 16], true, t0);
        links.finish([1; 16], [10; 16], t0 + Duration::from_secs(1));
        // A task the exchange left running calls out afterwards.
        assert_eq!(
            links.child(Some([1; 16]), t0 + Duration::from_secs(30)),
            child(10, 0)
        );
        assert_eq!(
            links.child(Some([1; 16]), t0 + Duration::from_secs(31)),
            LinkAnswer::Unknown
        );
        assert!(links.is_empty());
    }

    #[test]
    fn overlapping_exchanges_of_one_trace_make_their_children_ambiguous() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        links.start([1; 16], [10; 16], true, t0);
        links.start([1; 16], [11; 16], true, t0);
        assert_eq!(links.child(Some([1; 16]), t0), LinkAnswer::Ambiguous);
        // Still after one of them finished: they overlapped.
        links.finish([1; 16], [10; 16], t0);
        assert_eq!(links.child(Some([1; 16]), t0), LinkAnswer::Ambiguous);
    }

    #[test]
    fn sequential_exchanges_of_one_trace_link_to_the_one_in_flight() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        links.start([1; 16], [10; 16], true, t0);
        links.finish([1; 16], [10; 16], t0);
        links.start([1; 16], [11; 16], true, t0);
        assert_eq!(links.child(Some([1; 16]), t0), child(11, 0));
        links.finish([1; 16], [11; 16], t0);
        // Both finished within the window: which one is not known.
        assert_eq!(links.child(Some([1; 16]), t0), LinkAnswer::Ambiguous);
    }

    #[test]
    fn a_sampled_out_parent_is_said() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        links.start([1; 16], [10; 16], false, t0);
        assert_eq!(
            links.child(Some([1; 16]), t0),
            LinkAnswer::Child {
                parent_id: [10; 16],
                order: 0,
                sampled: false
            }
        );
    }

    #[test]
    fn memory_is_bounded_and_what_could_not_be_kept_is_counted() {
        let links = LinkRegistry::with_max(WINDOW, 2);
        let t0 = Instant::now();
        links.start([1; 16], [10; 16], true, t0);
        links.start([2; 16], [20; 16], true, t0);
        // Both in flight: a third is not registered.
        assert!(!links.start([3; 16], [30; 16], true, t0));
        assert_eq!(links.not_registered(), 1);
        assert_eq!(links.child(Some([3; 16]), t0), LinkAnswer::Unknown);
        // A finished one makes room early, the oldest first.
        links.finish([1; 16], [10; 16], t0);
        assert!(links.start([3; 16], [30; 16], true, t0));
        assert_eq!(links.child(Some([1; 16]), t0), LinkAnswer::Unknown);
        assert_eq!(links.child(Some([3; 16]), t0), child(30, 0));
        assert_eq!(links.len(), 2);
    }

    #[test]
    fn finishing_twice_or_an_unknown_exchange_changes_nothing() {
        let links = LinkRegistry::new(WINDOW);
        let t0 = Instant::now();
        links.finish([1; 16], [10; 16], t0);
        links.start([1; 16], [10; 16], true, t0);
        links.finish([1; 16], [10; 16], t0);
        links.finish([1; 16], [10; 16], t0 + Duration::from_secs(29));
        assert_eq!(
            links.child(Some([1; 16]), t0 + Duration::from_secs(31)),
            LinkAnswer::Unknown
        );
    }
}
