//! [`RetryPolicy`]: how many attempts a job gets and how long it waits between them.

use std::time::Duration;

/// Attempts and exponential backoff with jitter, capped.
///
/// The delay before attempt `n + 1` after failed attempt `n` is
/// `min(base · factorⁿ⁻¹, max)`, then scaled by a random factor in `[1 − jitter, 1]` so
/// that jobs that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use jobworks::RetryPolicy;
/// let policy = RetryPolicy::default().max_attempts(5).base(Duration::from_millis(100));
/// assert!(policy.backoff(3) <= Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    factor: f64,
    max: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    /// 3 attempts; 1 s, 2 s, 4 s … capped at 5 minutes; 20 % jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Sets how many attempts a job gets in all (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the delay after the first failed attempt.
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the growth factor between attempts (at least 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the longest delay.
    pub fn cap(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets the jitter fraction, from 0 (none) to 1.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How many attempts a job gets.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after failed attempt `attempt` (1-based), jitter included.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_with(attempt, rand::random::<f64>())
    }

    /// The delay for a given random draw in `[0, 1)`; pure, for tests.
    fn backoff_with(&self, attempt: u32, draw: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let raw = self.base.as_secs_f64() * self.factor.powi(exp);
        let capped = raw.min(self.max.as_secs_f64());
        let scaled = capped * (1.0 - self.jitter * draw);
        Duration::from_secs_f64(scaled.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let p = RetryPolicy::default().jitter(0.0);
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(4), Duration::from_secs(8));
        assert_eq!(p.backoff(30), Duration::from_secs(300));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let p = RetryPolicy::default().jitter(0.5);
        assert_eq!(p.backoff_with(2, 0.0), Duration::from_secs(2));
        assert_eq!(p.backoff_with(2, 0.5), Duration::from_millis(1500));
        for _ in 0..1000 {
            let d = p.backoff(2);
            assert!(
                d > Duration::from_millis(999) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn settings_are_clamped() {
        let p = RetryPolicy::default()
            .max_attempts(0)
            .factor(f64::NAN)
            .jitter(7.0);
        assert_eq!(p.attempts(), 1);
        assert_eq!(p.backoff_with(3, 0.99), Duration::from_secs_f64(1.0 - 0.99));
    }
}
