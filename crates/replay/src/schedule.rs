//! When each call leaves: the open-loop schedule. A call's due time comes
//! from the recording and the pacing alone, never from how fast earlier
//! calls were answered, so a slow target shows up as latency rather than
//! as a quietly lower rate.

use std::time::Duration;

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
            Pacing::Rate(rate) => Some(Duration::from_secs_f64(self.calls as f64 / rate)),
            Pacing::Speed(speed) => {
                let origin = *self.origin_ns.get_or_insert(recorded_at_ns);
                let gap = recorded_at_ns.saturating_sub(origin) as f64 / speed;
                Some((self.base + Duration::from_nanos(gap as u64)).max(self.last))
            }
        };
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
                0 | 1 => Duration::from_secs_f64(1.0 / speed),
                n => span / u32::try_from(n - 1).unwrap_or(u32::MAX),
            };
            self.base = self.last + gap;
            self.last = self.base;
            self.origin_ns = None;
        }
        self.calls_in_pass = 0;
    }
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
}
