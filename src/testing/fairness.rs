//! Conformance cases for fairness and per-key limits: tenants take turns within a queue,
//! and `max_running_per_key` caps the jobs of one concurrency key.

use std::time::Duration;

use super::{LONG, insert_one, job, sample_input, tenant};
use crate::store::JobStoreExt;
use crate::{ClaimParams, Finish, Job, JobStore, QueueName, QueuePatch};

fn queue(name: &str) -> QueueName {
    QueueName::new(name).expect("valid test queue")
}

fn in_queue(tenant_name: &str, name: &str, priority: i32, key: Option<&str>) -> Job {
    let mut j = job(tenant_name, sample_input());
    j.queue = queue(name);
    j.priority = priority;
    j.concurrency_key = key.map(str::to_owned);
    j
}

/// With 10,000 queued jobs of one tenant and then 10 of another in one queue, the small
/// tenant's ten all start within the first 40 claimed (claims of 1 to 4 jobs), in their
/// priority order, and the big tenant's jobs start in their own claim order.
pub async fn tenants_take_turns(store: &impl JobStore) {
    const BIG: usize = 10_000;
    for chunk in 0..BIG / 1000 {
        let jobs = (0..1000)
            .map(|i| in_queue("big", "shared", -((chunk * 1000 + i) as i32 % 7), None))
            .collect();
        store.submit(jobs).await.expect("insert the backlog");
    }
    for p in [3, 9, 0, 5, 1, 8, 2, 7, 4, 6] {
        insert_one(store, in_queue("small", "shared", p, None)).await;
    }
    let mut started = Vec::new();
    for size in [1, 3, 2, 4].into_iter().cycle() {
        if started.len() >= 40 {
            break;
        }
        let params = ClaimParams::default()
            .queue(queue("shared"))
            .limit(size)
            .lease_ttl(LONG);
        let claimed = store.take(params).await.expect("claim");
        assert_eq!(claimed.jobs.len(), size, "a claim took less than it could");
        started.extend(claimed.jobs.into_iter().map(|c| c.job));
    }
    let small: Vec<i32> = started
        .iter()
        .filter(|j| j.tenant == tenant("small"))
        .map(|j| j.priority)
        .collect();
    assert_eq!(
        small,
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        "the small tenant's jobs did not all start within the first 40, by priority"
    );
    let big: Vec<&Job> = started
        .iter()
        .filter(|j| j.tenant == tenant("big"))
        .collect();
    let mut sorted = big.clone();
    sorted.sort_by_key(|j| crate::rules::claim_order(j));
    assert_eq!(
        big, sorted,
        "the big tenant's jobs started out of claim order"
    );
}

/// `max_running_per_key` caps the running jobs of each concurrency key, counting jobs
/// under unexpired leases: a key's free slots go to its best jobs, jobs without a key are
/// not held, a claim held back so says it is full, and an ended or expired job frees its
/// key's slot.
pub async fn max_running_per_key_caps_claims(store: &impl JobStore) {
    let keyed = queue("keyed");
    let bad = QueuePatch::default().max_running_per_key(Some(0));
    assert!(store.configure_queue(&keyed, bad).await.is_err());
    let set = store
        .configure_queue(&keyed, QueuePatch::default().max_running_per_key(Some(2)))
        .await
        .expect("limit");
    assert_eq!(set.max_running_per_key, Some(2));
    for (p, key) in [
        (3, Some("a")),
        (1, Some("a")),
        (2, Some("a")),
        (1, Some("b")),
        (3, Some("b")),
        (2, Some("b")),
        (0, None),
        (0, None),
    ] {
        insert_one(store, in_queue("acme", "keyed", p, key)).await;
    }
    let short = Duration::from_secs(5);
    let params = |ttl| {
        ClaimParams::default()
            .limit(10)
            .lease_ttl(ttl)
            .queue(keyed.clone())
    };
    let first = store.take(params(short)).await.expect("claim");
    let mut took: Vec<(Option<&str>, i32)> = first
        .jobs
        .iter()
        .map(|c| (c.job.concurrency_key.as_deref(), c.job.priority))
        .collect();
    took.sort();
    assert_eq!(
        took,
        [
            (None, 0),
            (None, 0),
            (Some("a"), 2),
            (Some("a"), 3),
            (Some("b"), 2),
            (Some("b"), 3)
        ],
        "each key's two slots go to its best jobs; jobs without a key are not held"
    );
    assert!(first.full, "the claim was held back by the per-key limit");
    let none = store.take(params(LONG)).await.expect("claim");
    assert!(none.jobs.is_empty() && none.full, "{none:?}");

    // A finish frees its key's slot, and only that key's.
    let a = first
        .jobs
        .iter()
        .find(|c| c.job.concurrency_key.as_deref() == Some("a"))
        .expect("an a job");
    let done = Finish::Completed {
        result: serde_json::json!(null),
    };
    store.finish(&a.lease, done).await.expect("finish");
    let next = store.take(params(LONG)).await.expect("claim");
    assert_eq!(next.jobs.len(), 1, "{next:?}");
    assert_eq!(next.jobs[0].job.concurrency_key.as_deref(), Some("a"));
    assert_eq!(next.jobs[0].job.priority, 1);

    // Expired leases free their slots: b's last job starts.
    store.clock().advance(short + Duration::from_secs(1));
    let after = store.take(params(LONG)).await.expect("claim");
    let keys: Vec<_> = after
        .jobs
        .iter()
        .map(|c| c.job.concurrency_key.as_deref())
        .collect();
    assert_eq!(keys, [Some("b")], "{after:?}");
    let info = store.queues().await.expect("queues");
    let stored = info.iter().find(|q| q.name == keyed).expect("stored");
    assert_eq!(stored.settings.max_running_per_key, Some(2));
    assert_eq!(tenant("acme"), first.jobs[0].job.tenant);
}

/// Tenant quotas refuse a submit that would go over them, creating nothing: in all
/// queues and in one; other tenants are not held; a finished job frees its place; a
/// replay of a stored job is answered at the quota; and of 12 concurrent submits of one
/// job each, exactly as many as the quota has room for succeed.
pub async fn quotas_refuse_at_submit(store: &impl JobStore) {
    use crate::{Error, JobStatus, Quota};
    let tight = queue("tight");
    let quotas = [
        Quota::unfinished(3),
        Quota::unfinished(1).in_queue(tight.clone()),
    ];
    let one = |tenant_name: &str| vec![job(tenant_name, sample_input())];
    let mut keyed = job("acme", sample_input());
    keyed.idempotency_key = Some("once".into());
    store
        .submit_within([vec![keyed.clone()], one("acme")].concat(), &quotas)
        .await
        .expect("room for two");
    let two = [one("acme"), one("acme")].concat();
    let refused = store.submit_within(two.clone(), &quotas).await;
    assert!(
        matches!(
            &refused,
            Err(Error::QuotaExceeded {
                limit: 3,
                queue: None,
                ..
            })
        ),
        "{refused:?}"
    );
    for j in &two {
        let gone = store.get(&tenant("acme"), j.id).await;
        assert!(
            matches!(gone, Err(Error::NotFound { .. })),
            "a refused job was created"
        );
    }
    store
        .submit_within(two[..1].to_vec(), &quotas)
        .await
        .expect("room for one more");
    store
        .submit_within(one("globex"), &quotas)
        .await
        .expect("another tenant is not held");
    // At the quota, a replay of a stored job is still answered.
    let mut replay = keyed.clone();
    replay.id = crate::JobId::new();
    let again = store
        .submit_within(vec![replay], &quotas)
        .await
        .expect("a replay");
    assert!(!again[0].created && again[0].job.id == keyed.id);

    // The queue's own quota.
    let in_tight = || {
        let mut j = job("globex", sample_input());
        j.queue = tight.clone();
        vec![j]
    };
    store
        .submit_within(in_tight(), &quotas)
        .await
        .expect("room in tight");
    let refused = store.submit_within(in_tight(), &quotas).await;
    assert!(
        matches!(&refused, Err(Error::QuotaExceeded { limit: 1, queue: Some(q), .. }) if *q == tight),
        "{refused:?}"
    );

    // A finished job frees its place.
    let claimed = store
        .take(ClaimParams::default().limit(1).lease_ttl(LONG))
        .await
        .expect("claim");
    let c = claimed.jobs.first().expect("an acme or globex job");
    let done = Finish::Completed {
        result: serde_json::json!(null),
    };
    let ended = store.finish(&c.lease, done).await.expect("finish");
    assert_eq!(ended.status, JobStatus::Completed);
    store
        .submit_within(one(ended.tenant.as_str()), &quotas)
        .await
        .expect("a place was freed");

    // Concurrent submits: exactly the room left is taken.
    let racing = [Quota::unfinished(5)];
    let submits = (0..12).map(|_| store.submit_within(one("initech"), &racing));
    let answers = futures::future::join_all(submits).await;
    let created = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(created, 5, "{answers:?}");
    assert!(answers.iter().all(|a| match a {
        Ok(_) => true,
        Err(e) => matches!(e, Error::QuotaExceeded { .. }),
    }));
    assert_eq!(tenant("acme"), keyed.tenant);
}
