//! The adapter's in-memory limits: requests per principal, and failed authentications per
//! client address. Both forget idle keys, so their memory does not grow with every
//! client ever seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// How often the tables drop the keys they no longer need.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Requests per key (a principal), with governor's keyed GCRA limiter.
#[derive(Debug)]
pub(crate) struct KeyedRate {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    last_prune: Mutex<Instant>,
}

impl KeyedRate {
    /// `per_second` requests a second per key, in bursts of as many.
    pub(crate) fn per_second(per_second: NonZeroU32) -> Self {
        KeyedRate {
            limiter: RateLimiter::keyed(Quota::per_second(per_second)),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// `Ok` when `key` may make a request now, else how long it must wait.
    pub(crate) fn check(&self, key: &str) -> Result<(), Duration> {
        self.prune_now_and_then();
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn prune_now_and_then(&self) {
        let Ok(mut last) = self.last_prune.try_lock() else {
            return;
        };
        if last.elapsed() >= PRUNE_EVERY {
            *last = Instant::now();
            self.prune();
        }
    }

    /// Drops the keys whose state is back to a full burst: they behave as new ones.
    pub(crate) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// Most client addresses the failure table follows at once; past that (a spray from very
/// many addresses) new addresses go uncounted until old windows end, so memory stays
/// bounded.
const MAX_TRACKED: usize = 100_000;

/// Failed authentications per client address in fixed windows: more than `max` in one
/// window blocks the address until the window ends.
#[derive(Debug)]
pub(crate) struct FailedAuth {
    max: u32,
    window: Duration,
    table: Mutex<Table>,
    /// How many addresses the table held after its last change: while none, a request
    /// is checked without taking the lock.
    tracked: AtomicUsize,
}

#[derive(Debug)]
struct Table {
    windows: HashMap<IpAddr, (Instant, u32)>,
    last_prune: Instant,
}

impl FailedAuth {
    /// Blocks an address after `max` failures within `window`.
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        FailedAuth {
            max,
            window,
            table: Mutex::new(Table {
                windows: HashMap::new(),
                last_prune: Instant::now(),
            }),
            tracked: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(wait)` when `addr` used up its failures and must wait until its window ends.
    pub(crate) fn blocked(&self, addr: IpAddr) -> Option<Duration> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let table = self.lock();
        let (start, failures) = *table.windows.get(&addr)?;
        let left = self.window.checked_sub(start.elapsed())?;
        (failures >= self.max).then_some(left)
    }

    /// Counts a failed authentication of `addr`.
    pub(crate) fn failed(&self, addr: IpAddr) {
        let now = Instant::now();
        let mut table = self.lock();
        if now.duration_since(table.last_prune) >= PRUNE_EVERY || table.windows.len() >= MAX_TRACKED
        {
            let window = self.window;
            table
                .windows
                .retain(|_, (start, _)| start.elapsed() < window);
            table.windows.shrink_to_fit();
            table.last_prune = now;
        }
        if table.windows.len() < MAX_TRACKED || table.windows.contains_key(&addr) {
            let entry = table.windows.entry(addr).or_insert((now, 0));
            if entry.0.elapsed() >= self.window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
        self.tracked.store(table.windows.len(), Ordering::Relaxed);
    }

    /// How many addresses it follows.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_principals_are_forgotten() {
        let rate = KeyedRate::per_second(NonZeroU32::new(1000).unwrap());
        for i in 0..500 {
            assert!(rate.check(&format!("client-{i}")).is_ok());
        }
        assert_eq!(rate.len(), 500);
        // At 1,000 a second a key is back to a full burst after 1 ms.
        std::thread::sleep(Duration::from_millis(20));
        rate.prune();
        assert_eq!(rate.len(), 0);
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let failures = FailedAuth::new(3, Duration::from_millis(200));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(failures.blocked(a), None);
            failures.failed(a);
        }
        let wait = failures.blocked(a).expect("blocked after 3 failures");
        assert!(wait <= Duration::from_millis(200));
        assert_eq!(failures.blocked(b), None, "other addresses are not");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(failures.blocked(a), None, "the window ended");
        failures.failed(a);
        assert_eq!(
            failures.blocked(a),
            None,
            "a new window starts at one failure"
        );
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let failures = FailedAuth::new(3, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            failures.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(failures.len(), MAX_TRACKED);
    }
}
