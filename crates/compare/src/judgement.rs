//! How a run that judges ends: one rule for every command that compares
//! or mocks (`diff`, `replay --compare`, `mirror --compare`, `mock`), so
//! that their exit codes mean the same thing (docs/cli.md, "Exit codes").

/// What a run that judges found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judgement {
    /// Pairs that regressed (diff, replay and mirror with `--compare`).
    pub regressed: u64,
    /// Calls a mock could not answer from the recording.
    pub missed: u64,
    /// Whether an input was damaged (everything intact was processed).
    pub damaged: bool,
    /// Pairs compared (or calls a mock served).
    pub compared: u64,
    /// The fewest pairs that must be compared for the run to count
    /// (`--min-compared`; 0 for a mock).
    pub min_compared: u64,
}

/// How a judged run ends, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Compared, nothing regressed, nothing missed: 0.
    Passed,
    /// Something regressed, or a mock call missed: 1. Wins over damage
    /// and too little compared, which are still reported.
    Regressed,
    /// An input was damaged; everything intact was processed: 3.
    Damaged,
    /// Fewer pairs were compared than asked for: 4. Wins over damage.
    TooFewCompared,
}

impl Finding {
    /// The process exit code (2, a usage or runtime error, is not a
    /// finding: the run did not get to judge).
    pub const fn code(self) -> u8 {
        match self {
            Finding::Passed => 0,
            Finding::Regressed => 1,
            Finding::Damaged => 3,
            Finding::TooFewCompared => 4,
        }
    }
}

impl Judgement {
    /// The finding, by precedence: regressed or missed, then too few
    /// compared, then damaged.
    pub fn finding(&self) -> Finding {
        if self.regressed > 0 || self.missed > 0 {
            Finding::Regressed
        } else if self.too_few() {
            Finding::TooFewCompared
        } else if self.damaged {
            Finding::Damaged
        } else {
            Finding::Passed
        }
    }

    /// Whether fewer pairs were compared than `min_compared`.
    pub fn too_few(&self) -> bool {
        self.compared < self.min_compared
    }

    /// Both runs' findings at once (a replay's damaged recording and its
    /// comparison): counts add up, damage from either counts, and the
    /// stricter minimum holds.
    #[must_use]
    pub fn and(self, other: Judgement) -> Judgement {
        Judgement {
            regressed: self.regressed + other.regressed,
            missed: self.missed + other.missed,
            damaged: self.damaged || other.damaged,
            compared: self.compared + other.compared,
            min_compared: self.min_compared.max(other.min_compared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_of_the_table_and_its_precedence() {
        let j = |regressed, missed, damaged, compared| Judgement {
            regressed,
            missed,
            damaged,
            compared,
            min_compared: 1,
        };
        assert_eq!(j(0, 0, false, 5).finding().code(), 0);
        assert_eq!(j(1, 0, false, 5).finding().code(), 1);
        assert_eq!(j(0, 1, false, 5).finding().code(), 1);
        assert_eq!(j(0, 0, true, 5).finding().code(), 3);
        assert_eq!(j(0, 0, false, 0).finding().code(), 4);
        // 1 wins over 3 and 4; 4 wins over 3.
        assert_eq!(j(1, 0, true, 0).finding(), Finding::Regressed);
        assert_eq!(j(0, 0, true, 0).finding(), Finding::TooFewCompared);
        // No minimum: nothing compared is not a shortfall.
        let mut idle = j(0, 0, false, 0);
        idle.min_compared = 0;
        assert_eq!(idle.finding(), Finding::Passed);
    }
}
