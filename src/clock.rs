//! [`Clock`]: where stores and the engine read the time, so tests can move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The time as a store sees it: the system's, shifted by an offset that only tests move.
///
/// Every store and the engine read it (at the microsecond precision stores keep), so a
/// test can expire leases and make retries due by moving it forward instead of sleeping.
/// Clones share the offset.
///
/// ```
/// use std::time::Duration;
/// let clock = jobworks::Clock::default();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert!(clock.now() - before >= chrono::Duration::hours(1));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock (until someone [`advance`](Self::advance)s it).
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time, to the microsecond.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_micros.load(Ordering::Relaxed);
        let now = crate::job::now();
        if offset == 0 {
            return now;
        }
        now.checked_add_signed(chrono::Duration::microseconds(offset))
            .unwrap_or(now)
    }

    /// Moves this clock and every clone of it forward by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        let _ = self
            .offset_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(micros))
            });
    }

    /// How far it was moved from the system clock.
    pub fn offset(&self) -> Duration {
        let micros = self.offset_micros.load(Ordering::Relaxed);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together() {
        let a = Clock::default();
        let b = a.clone();
        let start = b.now();
        a.advance(Duration::from_secs(90));
        assert_eq!(b.offset(), Duration::from_secs(90));
        let moved = b.now() - start;
        assert!(moved >= chrono::Duration::seconds(90), "{moved}");
        assert!(moved < chrono::Duration::seconds(95), "{moved}");
        assert_eq!(Clock::system().offset(), Duration::ZERO);
    }
}
