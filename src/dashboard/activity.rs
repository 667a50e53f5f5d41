//! The overview's last hour, counted once per minute: the counts of minutes that have
//! ended are kept, so each view reads only the store's latest minutes.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::engine::{Engine, Tenants};
use crate::store::{MinuteCounts, minute_of};

/// Minutes still read from the store on every view: the current one and the one before
/// (a job stamped just before a minute ended may commit just after).
const OPEN_MINUTES: i64 = 2;
/// Scopes (sets of tenants) kept at most; past it the cache starts over.
const MAX_SCOPES: usize = 256;

/// The counts of the minutes before a time, oldest first.
type Closed = (DateTime<Utc>, Vec<MinuteCounts>);

/// Per scope of tenants, the minutes that ended.
#[derive(Debug, Default)]
pub(super) struct Activity {
    kept: Mutex<HashMap<String, Closed>>,
}

fn key(tenants: &Tenants) -> String {
    match tenants {
        Tenants::All => "*".to_owned(),
        Tenants::Only(set) => set
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join("\0"),
    }
}

impl Activity {
    /// The finished and failed jobs of `tenants` by minute from `start` (a minute's
    /// start) on; `None` when the store cannot count them.
    pub(super) async fn since(
        &self,
        engine: &Engine,
        tenants: &Tenants,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> crate::Result<Option<Vec<MinuteCounts>>> {
        let key = key(tenants);
        let until = minute_of(now) - Duration::minutes(OPEN_MINUTES - 1);
        let (mut kept, read_from) = {
            let cache = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&key) {
                Some((kept_until, kept)) if *kept_until >= start => {
                    let kept: Vec<MinuteCounts> =
                        kept.iter().filter(|m| m.minute >= start).copied().collect();
                    (kept, *kept_until)
                }
                _ => (Vec::new(), start),
            }
        };
        let Some(fresh) = engine.across(tenants).finished_by_minute(read_from).await? else {
            return Ok(None);
        };
        kept.extend(fresh.iter().copied());
        let until = until.max(read_from);
        let closed: Vec<MinuteCounts> = kept.iter().filter(|m| m.minute < until).copied().collect();
        let mut cache = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_SCOPES && !cache.contains_key(&key) {
            cache.clear();
        }
        cache.insert(key, (until, closed));
        Ok(Some(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobContext, JobError, JobType, NewJob, TenantId, from_fn};

    async fn run(engine: &Engine, tenant: &TenantId, n: usize) {
        for _ in 0..n {
            let job = NewJob::new(JobType::new("ECHO").unwrap(), serde_json::json!({}));
            let id = engine.submit(tenant, job).await.unwrap().job.id;
            engine
                .wait_until_terminal(tenant, id, std::time::Duration::from_secs(5))
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_minutes_and_fresh_ones_add_up() {
        let echo =
            from_fn(|_c: JobContext, v: serde_json::Value| async move { Ok::<_, JobError>(v) });
        let engine = Engine::builder().executor("ECHO", echo).build().unwrap();
        engine.start().unwrap();
        let acme = TenantId::new("acme").unwrap();
        let activity = Activity::default();
        let total = |counts: Option<Vec<MinuteCounts>>| -> u64 {
            counts.unwrap().iter().map(|m| m.completed).sum()
        };
        let start = minute_of(Utc::now()) - Duration::minutes(59);
        run(&engine, &acme, 3).await;
        let now = Utc::now();
        assert_eq!(
            total(
                activity
                    .since(&engine, &Tenants::All, start, now)
                    .await
                    .unwrap()
            ),
            3
        );
        assert_eq!(
            total(
                activity
                    .since(&engine, &Tenants::All, start, now)
                    .await
                    .unwrap()
            ),
            3
        );
        run(&engine, &acme, 2).await;
        let now = Utc::now();
        assert_eq!(
            total(
                activity
                    .since(&engine, &Tenants::All, start, now)
                    .await
                    .unwrap()
            ),
            5
        );
        let other = Tenants::only([TenantId::new("globex").unwrap()]);
        assert_eq!(
            total(activity.since(&engine, &other, start, now).await.unwrap()),
            0
        );
        // An hour later the kept minutes have left the window.
        let later = now + Duration::minutes(61);
        let start = minute_of(later) - Duration::minutes(59);
        assert_eq!(
            total(
                activity
                    .since(&engine, &Tenants::All, start, later)
                    .await
                    .unwrap()
            ),
            0
        );
        engine.shutdown().await;
    }
}
