//! [`Clock`]: where stores and the engine read the time, so tests can move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The time as a store sees it: the system's, shifted by an offset that only tests move.
///
/// Every store and the engine read it (at the microsecond precision stores keep), so a
/// test can expire leases and make retries due by moving it forward instead of sleeping.
/// A store may also correct it to its own source of time: PostgreSQL keeps it on the
/// database server's clock, so engines on machines with skewed clocks agree on lease
/// expiries and due times. Clones share the offset and the correction.
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
    correction_micros: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock (until someone [`advance`](Self::advance)s it).
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time, to the microsecond.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_micros.load(Ordering::Relaxed)
            + self.correction_micros.load(Ordering::Relaxed);
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

    /// Corrects the clock to a source that read `source` while this process's clock,
    /// before corrections, read `local` (the midpoint of the round trip that asked).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // only PostgreSQL corrects
    pub(crate) fn correct_to(&self, source: DateTime<Utc>, local: DateTime<Utc>) {
        let micros = (source - local).num_microseconds().unwrap_or(0);
        self.correction_micros.store(micros, Ordering::Relaxed);
    }

    /// How far the store's source of time is ahead of this process's clock (negative when
    /// behind): the correction [`now`](Self::now) adds.
    pub fn correction(&self) -> chrono::Duration {
        chrono::Duration::microseconds(self.correction_micros.load(Ordering::Relaxed))
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

    #[test]
    fn a_correction_puts_it_on_its_source_and_adds_to_the_offset() {
        let clock = Clock::default();
        let local = crate::job::now();
        clock.correct_to(local + chrono::Duration::seconds(-40), local);
        assert_eq!(clock.correction(), chrono::Duration::seconds(-40));
        // The clock first, the system after: the system's reading is never the earlier.
        let ours = clock.now();
        let behind = crate::job::now() - ours;
        assert!(behind >= chrono::Duration::seconds(40), "{behind}");
        assert!(behind < chrono::Duration::seconds(41), "{behind}");
        clock.advance(Duration::from_secs(100));
        let ahead = clock.now() - crate::job::now();
        assert!(ahead > chrono::Duration::seconds(59) && ahead <= chrono::Duration::seconds(60));
    }
}
