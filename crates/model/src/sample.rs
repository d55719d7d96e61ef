//! Which exchanges to record: a sampling decision taken from the exchange
//! id (so a run is reproducible and every recorder sampling the same ids
//! agrees), and a cap on exchanges recorded per second.

/// Keeps a fraction of exchanges, decided by their id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    threshold: u64,
    rate: f64,
}

/// A sampling rate outside 0.0–1.0.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sample rate {0}: expected a number from 0.0 to 1.0")]
pub struct RateError(pub f64);

impl Sampler {
    /// Keeps about `rate` (0.0–1.0) of exchanges.
    pub fn new(rate: f64) -> Result<Sampler, RateError> {
        if !(0.0..=1.0).contains(&rate) || rate.is_nan() {
            return Err(RateError(rate));
        }
        let threshold = if rate >= 1.0 {
            u64::MAX
        } else {
            (rate * u64::MAX as f64) as u64
        };
        Ok(Sampler { threshold, rate })
    }

    /// Keeps everything.
    pub fn all() -> Sampler {
        Sampler {
            threshold: u64::MAX,
            rate: 1.0,
        }
    }

    /// The rate, for the exchange's `flags.sample_rate`.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether the exchange with this id is kept.
    pub fn keep(&self, id: &[u8]) -> bool {
        if self.threshold == u64::MAX {
            return true;
        }
        if self.threshold == 0 {
            return false;
        }
        // FNV-1a then a final mix: ids that differ only in their last
        // bytes (or only in their time prefix) still spread evenly.
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for byte in id {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash < self.threshold
    }
}

/// At most `per_second` exchanges a second (a token bucket holding one
/// second's worth), timed by the caller's clock so it stays pure.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: f64,
    tokens: f64,
    last_ns: u64,
}

impl RateLimit {
    /// Allows `per_second` exchanges a second, in bursts of up to as many.
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            last_ns: 0,
        }
    }

    /// Takes a token at `now_ns` if there is one.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        if self.last_ns != 0 {
            let elapsed = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        }
        self.last_ns = now_ns;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_reproducible_and_near_its_rate() {
        let sampler = Sampler::new(0.1).unwrap();
        let ids: Vec<Vec<u8>> = (0u32..20_000).map(|i| i.to_be_bytes().to_vec()).collect();
        let kept = ids.iter().filter(|id| sampler.keep(id)).count();
        assert!((1_800..2_200).contains(&kept), "{kept}");
        assert_eq!(
            kept,
            ids.iter().filter(|id| sampler.keep(id)).count(),
            "same ids, same decisions"
        );
        assert!(ids.iter().all(|id| Sampler::new(1.0).unwrap().keep(id)));
        assert!(!ids.iter().any(|id| Sampler::new(0.0).unwrap().keep(id)));
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(Sampler::new(bad).is_err());
        }
    }

    #[test]
    fn rate_limit_refills_per_second() {
        let mut limit = RateLimit::new(10);
        let t0 = 1_000_000_000;
        assert_eq!(
            (0..20).filter(|_| limit.allow(t0)).count(),
            10,
            "a burst of one second's worth"
        );
        assert!(!limit.allow(t0 + 50_000_000));
        assert!(limit.allow(t0 + 100_000_000), "one token every 100 ms");
        assert_eq!(
            (0..20).filter(|_| limit.allow(t0 + 10_000_000_000)).count(),
            10,
            "never more than the bucket"
        );
    }
}
