// Shared by the SQL backends' test files: another tenant's row is never read.

use jobworks::{Error, EventParams, Job, JobId, JobStore, JobStoreExt, JobType, NewJob, TenantId};

/// Stores a job of one tenant, lets `corrupt` make its row undecodable (a status no
/// version writes), and asks for it as another tenant: a store that put the tenant in
/// its lookup answers `NotFound`, as for a missing id; one that read the row first and
/// compared the tenant afterwards fails to decode it. The owner's reads do fail, which
/// shows the row really is unreadable.
pub(super) async fn foreign_rows_are_never_read<F, Fut>(store: &dyn JobStore, corrupt: F)
where
    F: FnOnce(JobId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let owner = TenantId::new("owner").unwrap();
    let other = TenantId::new("other").unwrap();
    let new = NewJob::new(JobType::new("ECHO").unwrap(), serde_json::json!({"big": "x"}));
    let job = Job::new_queued(owner.clone(), new, 3);
    let id = job.id;
    store.submit(vec![job]).await.unwrap();
    corrupt(id).await;
    let not_found = |r: Result<(), Error>, what: &str| match r {
        Err(Error::NotFound { id: got }) => assert_eq!(got, id, "{what}"),
        other => panic!("{what} of a foreign job: {other:?}"),
    };
    not_found(store.get(&other, id).await.map(drop), "get");
    let events = store.events(&other, id, EventParams::default()).await;
    not_found(events.map(drop), "events");
    not_found(store.cancel(&other, id).await.map(drop), "cancel");
    let own = store.get(&owner, id).await;
    assert!(
        matches!(own, Err(ref e) if !matches!(e, Error::NotFound { .. })),
        "the owner's read decodes the corrupt row: {own:?}"
    );
}
