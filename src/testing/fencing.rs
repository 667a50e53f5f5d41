//! Fencing of artifact bytes: what a stalled attempt writes never replaces what the live
//! attempt wrote, and the bytes served always match the record.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{claim_one, insert_one, job, sample_input, tenant};
use crate::artifact::{ArtifactKey, ArtifactStore, ObjectStoreArtifacts, UrlSigner};
use crate::executor::{ArtifactSpec, JobContext};
use crate::store::JobStoreExt;
use crate::store::{Held, JobStore, ReapParams};
use crate::{Artifact, ClaimedJob, Error};

fn context(
    claimed: ClaimedJob,
    store: &Arc<dyn JobStore>,
    artifacts: &Arc<dyn ArtifactStore>,
) -> JobContext {
    let held = Held::new(&claimed);
    JobContext::new(
        claimed.job,
        held,
        store.clone(),
        artifacts.clone(),
        CancellationToken::new(),
    )
}

/// An attempt stalls past its lease while the job is reaped and claimed again; then both
/// attempts store `report.pdf`, the live one first. The zombie's record is refused and its
/// bytes are gone; the record names the live attempt's bytes, and reading them back gives
/// exactly the record's size and checksum. (With one key per job and name, the zombie's
/// late write replaced the live attempt's PDF under a record that no longer matched.)
pub async fn zombie_bytes_never_replace_the_live_attempts(store: Arc<dyn JobStore>) {
    let artifacts: Arc<dyn ArtifactStore> = Arc::new(ObjectStoreArtifacts::new(
        Arc::new(object_store::memory::InMemory::new()),
        UrlSigner::new(b"0123456789abcdef0123456789abcdef".to_vec(), "http://test"),
    ));
    let short = Duration::from_millis(150);
    let queued = insert_one(&*store, job("acme", sample_input())).await;
    let zombie = context(claim_one(&*store, short).await, &store, &artifacts);
    store.clock().advance(short + Duration::from_millis(50));
    let reaped = store.reap(ReapParams::default()).await.expect("reap");
    assert_eq!(reaped.requeued, 1);
    let live = context(
        claim_one(&*store, Duration::from_secs(60)).await,
        &store,
        &artifacts,
    );
    assert_eq!((zombie.attempt(), live.attempt()), (1, 2));

    let spec = || ArtifactSpec::new("report.pdf", "application/pdf").kind("report_pdf");
    let live_bytes = Bytes::from_static(b"%PDF- the live attempt's report");
    let recorded = live
        .put_artifact(spec(), live_bytes.clone())
        .await
        .expect("the live attempt records its artifact");
    let late = zombie
        .put_artifact(spec(), Bytes::from_static(b"%PDF- a stale, shorter one"))
        .await;
    assert!(
        matches!(late, Err(Error::LeaseLost { .. })),
        "the zombie's record is refused: {late:?}"
    );

    let t = tenant("acme");
    let read = store.get(&t, queued.id).await.expect("get");
    assert_eq!(read.artifacts, vec![recorded.clone()]);
    let key = ArtifactKey::of_record(t.clone(), queued.id, &recorded).expect("a safe name");
    let served = assert_bytes_match(&*artifacts, &key, &recorded).await;
    assert_eq!(
        served, live_bytes,
        "the served bytes are the live attempt's"
    );
    let stale = key.clone().of_attempt(zombie.attempt());
    assert!(
        matches!(
            artifacts.head(&stale).await,
            Err(Error::ArtifactNotFound { .. })
        ),
        "the zombie's unrecorded bytes were deleted"
    );
}

/// Reads the bytes stored under `key` and checks them against their record: the same
/// size and the same checksum. Returns them.
pub(super) async fn assert_bytes_match(
    artifacts: &dyn ArtifactStore,
    key: &ArtifactKey,
    recorded: &Artifact,
) -> Vec<u8> {
    let body = artifacts.get(key, None).await.expect("the recorded bytes");
    let mut served = Vec::new();
    let mut stream = body.stream;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        served.extend_from_slice(&chunk.expect("bytes"));
    }
    assert_eq!(recorded.size_bytes, served.len() as u64, "{key:?}: size");
    let checksum = format!("sha256:{:x}", Sha256::digest(&served));
    assert_eq!(recorded.checksum, checksum, "{key:?}: checksum");
    served
}
