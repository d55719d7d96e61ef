//! Downstream calls held for their inbound call's verdict, and the
//! verdicts remembered for downstream calls that end after it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Downstream calls waiting for their inbound call's verdict (`--match`
/// and the rate cap decide about inbound calls): a recorded call's
/// downstream calls are stored with it, an unrecorded call's dropped with
/// it. A downstream call usually ends before its inbound call does, so it
/// waits here; one whose inbound call does not come within [`HOLD_FOR`]
/// (a long stream, or dropped from a full queue), or past [`HOLD_MAX`]
/// waiting, is stored anyway.
///
/// The verdicts on the last [`VERDICTS_MAX`] inbound calls (of the last
/// [`HOLD_FOR`] at most) are kept for downstream calls that end after
/// their inbound call (from a task that outlived it). One that ends after
/// its inbound call's verdict was forgotten (more than 1,000 inbound
/// calls a second for a minute) is taken for an orphan: it waits, and is
/// stored after [`HOLD_FOR`] even if its inbound call was refused.
/// Keeping every verdict of the last minute instead would cost memory in
/// proportion to the load.
pub(crate) struct ParentVerdicts<T> {
    waiting: HashMap<[u8; 16], (Instant, Vec<T>), Ids>,
    held: usize,
    verdicts: HashMap<[u8; 16], bool, Ids>,
    /// The ids in `verdicts`, oldest first, with when each was judged.
    judged: VecDeque<([u8; 16], Instant)>,
    last_sweep: Option<Instant>,
}

impl<T> Default for ParentVerdicts<T> {
    fn default() -> Self {
        ParentVerdicts {
            waiting: HashMap::default(),
            held: 0,
            verdicts: HashMap::default(),
            judged: VecDeque::new(),
            last_sweep: None,
        }
    }
}

/// Exchange ids hashed with foldhash: they are reprise's own UUIDv7s
/// (never a client's), so SipHash's defence buys nothing here, and it was
/// 7 % of the recorder's time per call with `--match`.
type Ids = foldhash::fast::RandomState;

/// Longest wait for an inbound call's verdict.
const HOLD_FOR: Duration = Duration::from_secs(60);

/// Most downstream calls waiting at once.
const HOLD_MAX: usize = 10_000;

/// Most verdicts kept (about 6 MiB with their index). Keeping every verdict of the last
/// [`HOLD_FOR`] grew the proxy to 216 MiB in 20 s of `--match` under load.
const VERDICTS_MAX: usize = 65_536;

/// What becomes of a downstream call's record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChildFate {
    /// Stored now: its inbound call was kept, or it cannot wait.
    StoreNow,
    /// Dropped with its refused inbound call.
    DropWithParent,
    /// Held here until its inbound call is judged.
    WaitForParent,
}

impl<T> ParentVerdicts<T> {
    /// A downstream call of the inbound call `parent`; `hold` makes its
    /// record when it must wait.
    pub(crate) fn downstream(&mut self, parent: [u8; 16], hold: impl FnOnce() -> T) -> ChildFate {
        if let Some(&keep) = self.verdicts.get(&parent) {
            return if keep {
                ChildFate::StoreNow
            } else {
                ChildFate::DropWithParent
            };
        }
        if self.held >= HOLD_MAX {
            return ChildFate::StoreNow;
        }
        self.held += 1;
        self.waiting
            .entry(parent)
            .or_insert_with(|| (Instant::now(), Vec::new()))
            .1
            .push(hold());
        ChildFate::WaitForParent
    }

    /// The inbound call `id` was judged: its held downstream calls, to
    /// store with it or to drop with it.
    pub(crate) fn inbound(&mut self, id: [u8; 16], keep: bool) -> Vec<T> {
        let children = match self.waiting.remove(&id) {
            Some((_, children)) => {
                self.held -= children.len();
                children
            }
            None => Vec::new(),
        };
        if self.verdicts.insert(id, keep).is_none() {
            self.judged.push_back((id, Instant::now()));
            if self.judged.len() > VERDICTS_MAX {
                self.forget_oldest();
            }
        }
        children
    }

    /// Downstream calls that waited too long, to store; forgets old
    /// verdicts. Looks at most once a second.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<T> {
        if self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return Vec::new();
        }
        self.last_sweep = Some(now);
        while self
            .judged
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= HOLD_FOR)
        {
            self.forget_oldest();
        }
        let old: Vec<[u8; 16]> = self
            .waiting
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) >= HOLD_FOR)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in old {
            if let Some((_, children)) = self.waiting.remove(&id) {
                self.held -= children.len();
                out.extend(children);
            }
        }
        out
    }

    fn forget_oldest(&mut self) {
        if let Some((id, _)) = self.judged.pop_front() {
            self.verdicts.remove(&id);
        }
    }

    /// Everything still waiting (at close).
    pub(crate) fn rest(&mut self) -> Vec<T> {
        self.held = 0;
        self.waiting.drain().flat_map(|(_, (_, c))| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn downstream_calls_follow_their_inbound_calls_verdict() {
        let mut parents: ParentVerdicts<u8> = ParentVerdicts::default();
        for (child, parent) in [(11, 1), (12, 1), (21, 2)] {
            assert_eq!(
                parents.downstream(id(parent), || child),
                ChildFate::WaitForParent
            );
        }
        assert_eq!(
            parents.inbound(id(1), true),
            [11, 12],
            "a kept parent's children"
        );
        assert_eq!(
            parents.inbound(id(2), false),
            [21],
            "a refused parent's children"
        );
        // A late child of a known parent follows the verdict at once.
        assert_eq!(parents.downstream(id(1), || 13), ChildFate::StoreNow);
        assert_eq!(parents.downstream(id(2), || 22), ChildFate::DropWithParent);
        // An orphan waits, then is stored when its parent never comes.
        assert_eq!(parents.downstream(id(3), || 31), ChildFate::WaitForParent);
        let now = Instant::now();
        assert!(parents.expired(now).is_empty());
        assert!(parents.expired(now + Duration::from_millis(10)).is_empty());
        assert_eq!(
            parents.expired(now + HOLD_FOR + Duration::from_secs(2)),
            [31]
        );
        assert_eq!(parents.held, 0);
        assert!(parents.rest().is_empty());
        // Past HOLD_MAX waiting, a child is stored at once.
        for n in 0..HOLD_MAX {
            let mut parent = [9; 16];
            parent[..8].copy_from_slice(&(n as u64).to_le_bytes());
            assert_eq!(parents.downstream(parent, || 0), ChildFate::WaitForParent);
        }
        assert_eq!(parents.downstream(id(4), || 41), ChildFate::StoreNow);
        assert_eq!(parents.rest().len(), HOLD_MAX);
    }

    #[test]
    fn verdicts_kept_are_bounded() {
        let mut parents: ParentVerdicts<u8> = ParentVerdicts::default();
        for n in 0..VERDICTS_MAX as u32 + 10 {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            parents.inbound(id, false);
        }
        assert_eq!(parents.verdicts.len(), VERDICTS_MAX);
        assert_eq!(parents.judged.len(), VERDICTS_MAX);
        // The oldest are forgotten: a late child of one waits.
        assert_eq!(parents.downstream([0; 16], || 1), ChildFate::WaitForParent);
        let mut last = [0; 16];
        last[..4].copy_from_slice(&(VERDICTS_MAX as u32 + 9).to_le_bytes());
        assert_eq!(parents.downstream(last, || 2), ChildFate::DropWithParent);
        // All are forgotten once old.
        parents.expired(Instant::now() + HOLD_FOR + Duration::from_secs(1));
        assert!(parents.verdicts.is_empty() && parents.judged.is_empty());
    }
}
