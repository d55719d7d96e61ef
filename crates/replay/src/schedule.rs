//! When each call leaves: the open-loop schedule. A call's due time comes
//! from the recording and the pacing alone, never from how fast earlier
//! calls were answered, so a slow target shows up as latency rather than
//! as a quietly lower rate.

use std::time::Duration;

/// The latest a call can be due: a century. Pacing that would put a call
/// later (a tiny `--rate` or `--speed`) waits that long instead of
/// overflowing the clock.
pub const MAX_DUE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How calls are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// The recorded gaps divided by this factor (2.0: twice as fast).
    Speed(f64),
    /// This many calls per second, evenly spaced.
    Rate(f64),
    /// As fast as the target answers, bounded by the concurrency.
    Max,
}

/// Due times, as offsets from the start of the replay.
#[derive(Debug, Clone)]
pub struct ReplaySchedule {
    pacing: Pacing,
    /// Recorded start of the first call of the current pass.
    origin_ns: Option<u64>,
    /// Offset at which the current pass starts.
    base: Duration,
    /// Offset of the latest call: due times never go backwards.
    last: Duration,
    calls_in_pass: u64,
    calls: u64,
}

impl ReplaySchedule {
    /// A schedule for `pacing`.
    pub fn new(pacing: Pacing) -> Self {
        ReplaySchedule {
            pacing,
            origin_ns: None,
            base: Duration::ZERO,
            last: Duration::ZERO,
            calls_in_pass: 0,
            calls: 0,
        }
    }

    /// The due offset of the next call, recorded at `recorded_at_ns`;
    /// `None` with [`Pacing::Max`] (due at once).
    pub fn next(&mut self, recorded_at_ns: u64) -> Option<Duration> {
        let due = match self.pacing {
            Pacing::Max => None,
            Pacing::Rate(rate) => Some(seconds(self.calls as f64 / rate)),
            Pacing::Speed(speed) => {
                let origin = *self.origin_ns.get_or_insert(recorded_at_ns);
                let gap = recorded_at_ns.saturating_sub(origin) as f64 / speed / 1e9;
                Some(self.base.saturating_add(seconds(gap)).max(self.last))
            }
        }
        .map(|due| due.min(MAX_DUE));
        if let Some(due) = due {
            self.last = due;
        }
        self.calls += 1;
        self.calls_in_pass += 1;
        due
    }

    /// The recording starts again (`--loop`): the next pass begins one mean
    /// gap after the last call of this one (one second, divided by the
    /// speed, for a recording of one call).
    pub fn new_pass(&mut self) {
        if let Pacing::Speed(speed) = self.pacing {
            let span = self.last.saturating_sub(self.base);
            let gap = match self.calls_in_pass {
                0 | 1 => seconds(1.0 / speed),
                n => span / u32::try_from(n - 1).unwrap_or(u32::MAX),
            };
            self.base = self.last.saturating_add(gap).min(MAX_DUE);
            self.last = self.base;
            self.origin_ns = None;
        }
        self.calls_in_pass = 0;
    }
}

/// Seconds as a duration, at most [`MAX_DUE`].
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).map_or(MAX_DUE, |d| d.min(MAX_DUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn speed_divides_the_recorded_gaps() {
        let mut s = ReplaySchedule::new(Pacing::Speed(2.0));
        let due: Vec<_> = [1000 * MS, 1100 * MS, 1500 * MS]
            .iter()
            .map(|&t| s.next(t).unwrap().as_millis())
            .collect();
        assert_eq!(due, [0, 50, 250]);
        // A call recorded before the previous one is due with it, not earlier.
        assert_eq!(s.next(1200 * MS).unwrap().as_millis(), 250);
    }

    #[test]
    fn loops_continue_after_a_mean_gap() {
        let mut s = ReplaySchedule::new(Pacing::Speed(1.0));
        for t in [0, 100 * MS, 200 * MS] {
            s.next(t);
        }
        s.new_pass();
        assert_eq!(s.next(0).unwrap().as_millis(), 300);
        assert_eq!(s.next(100 * MS).unwrap().as_millis(), 400);
    }

    #[test]
    fn rate_spaces_evenly_across_passes() {
        let mut s = ReplaySchedule::new(Pacing::Rate(4.0));
        assert_eq!(s.next(99).unwrap().as_millis(), 0);
        assert_eq!(s.next(5).unwrap().as_millis(), 250);
        s.new_pass();
        assert_eq!(s.next(0).unwrap().as_millis(), 500);
        assert_eq!(ReplaySchedule::new(Pacing::Max).next(0), None);
    }

    #[test]
    fn extreme_pacing_saturates_instead_of_overflowing() {
        let mut s = ReplaySchedule::new(Pacing::Rate(1e-300));
        assert_eq!(s.next(0), Some(Duration::ZERO));
        assert_eq!(s.next(0), Some(MAX_DUE));
        let mut s = ReplaySchedule::new(Pacing::Speed(1e-300));
        s.next(0);
        assert_eq!(s.next(u64::MAX), Some(MAX_DUE));
        s.new_pass();
        assert_eq!(s.next(5), Some(MAX_DUE));
    }
}
