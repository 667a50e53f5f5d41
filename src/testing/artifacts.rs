//! Conformance cases for artifact stores and signed URLs.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::tenant;
use crate::{ArtifactKey, ArtifactName, ArtifactStore, BoxError, Error, JobId, SignatureError};

fn key(name: &str) -> ArtifactKey {
    ArtifactKey::new(
        tenant("acme"),
        JobId::new(),
        ArtifactName::new(name).expect("valid"),
    )
}

fn sha256(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

async fn read_all(
    store: &impl ArtifactStore,
    key: &ArtifactKey,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let body = store.get(key, range).await.expect("get");
    let chunks: Vec<Bytes> = body.stream.try_collect().await.expect("read");
    chunks.concat()
}

/// put, head, get (whole and ranged), list, delete.
pub async fn artifact_round_trip(store: &impl ArtifactStore) {
    let k = key("out/report.txt");
    let data = b"hello, artifacts".to_vec();
    let stored = store.put(&k, Bytes::from(data.clone())).await.expect("put");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.checksum, sha256(&data));
    assert_eq!(store.head(&k).await.expect("head").size, data.len() as u64);
    assert_eq!(read_all(store, &k, None).await, data);
    assert_eq!(read_all(store, &k, Some(7..16)).await, b"artifacts");
    assert_eq!(read_all(store, &k, Some(7..1000)).await, b"artifacts");
    assert!(
        store.get(&k, Some(100..200)).await.is_err(),
        "unsatisfiable range"
    );

    let sibling = ArtifactKey::new(
        k.tenant.clone(),
        k.job_id,
        ArtifactName::new("a.bin").expect("valid"),
    );
    store
        .put(&sibling, Bytes::from_static(b"x"))
        .await
        .expect("put");
    let other_job = key("a.bin");
    store
        .put(&other_job, Bytes::from_static(b"y"))
        .await
        .expect("put");
    let listed: Vec<String> = store
        .list(&k.tenant, k.job_id)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(listed, ["a.bin", "out/report.txt"]);

    store.delete(&k).await.expect("delete");
    store.delete(&k).await.expect("deleting twice is fine");
    assert!(matches!(
        store.head(&k).await,
        Err(Error::ArtifactNotFound { .. })
    ));
    assert!(matches!(
        store.get(&k, None).await,
        Err(Error::ArtifactNotFound { .. })
    ));
    store
        .delete_job(&k.tenant, k.job_id)
        .await
        .expect("delete job");
    assert!(
        store
            .list(&k.tenant, k.job_id)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        read_all(store, &other_job, None).await,
        b"y",
        "other jobs untouched"
    );
}

/// A stream larger than the single-request threshold is stored whole, with its checksum.
pub async fn artifact_large_stream(store: &impl ArtifactStore) {
    let k = key("big.bin");
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let chunks = 9;
    let one = Bytes::from(chunk.clone());
    let stream =
        futures::stream::iter((0..chunks).map(move |_| Ok::<_, BoxError>(one.clone()))).boxed();
    let stored = store.put_stream(&k, stream).await.expect("put_stream");
    let whole = chunk.repeat(chunks);
    assert_eq!(stored.size, whole.len() as u64);
    assert_eq!(stored.checksum, sha256(&whole));
    assert_eq!(read_all(store, &k, None).await, whole);

    let small = key("small.txt");
    let parts = futures::stream::iter([
        Ok::<_, BoxError>(Bytes::from_static(b"ab")),
        Ok(Bytes::from_static(b"cd")),
    ])
    .boxed();
    assert_eq!(store.put_stream(&small, parts).await.expect("put").size, 4);
    assert_eq!(read_all(store, &small, None).await, b"abcd");

    let failing = futures::stream::iter([
        Ok(Bytes::from_static(b"ab")),
        Err::<Bytes, BoxError>("disk on fire".into()),
    ])
    .boxed();
    let broken = key("broken.txt");
    assert!(store.put_stream(&broken, failing).await.is_err());
    assert!(
        store.head(&broken).await.is_err(),
        "a failed stream left an object"
    );
}

/// Unsafe names never reach the store.
pub async fn artifact_names_are_validated(_store: &impl ArtifactStore) {
    for bad in [
        "",
        "../etc/passwd",
        "/abs",
        "a/../../b",
        "a\u{0}b",
        "a\u{7}b",
        "a\\b",
        "a//b",
    ] {
        assert!(
            matches!(
                ArtifactName::new(bad),
                Err(Error::Invalid {
                    field: "artifact name",
                    ..
                })
            ),
            "{bad:?} was accepted"
        );
    }
}

/// A signed URL verifies; a changed signature, path or expiry does not; an expired one is
/// refused as expired.
pub async fn signed_urls_are_verified(store: &impl ArtifactStore) {
    let k = key("report.pdf");
    store
        .put(&k, Bytes::from_static(b"%PDF"))
        .await
        .expect("put");
    let signed = store
        .signed_url(&k, "application/pdf", Duration::from_secs(3600))
        .await
        .expect("sign");
    let lifetime = signed.expires_at - chrono::Utc::now();
    // Never more than the hour asked for; stores may take up to a twelfth off, so that
    // URLs minted in one window are equal.
    assert!(lifetime > chrono::Duration::minutes(54), "{lifetime}");
    assert!(lifetime <= chrono::Duration::hours(1), "{lifetime}");
    let token = signed.url.rsplit('/').next().expect("token").to_owned();
    let ok = match store.verify_token(&token) {
        Ok(ok) => ok,
        // A presigning store hands out the cloud's own URLs; nothing for us to verify.
        Err(SignatureError::Invalid) if !signed.url.contains("/artifacts/") => return,
        Err(e) => panic!("a fresh token was refused: {e}"),
    };
    assert_eq!(ok.key, k);
    assert_eq!(ok.content_type, "application/pdf");

    let (body, sig) = token.split_once('.').expect("body.signature");
    let mut flipped = sig.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let tampered_sig = format!("{body}.{}", String::from_utf8(flipped).expect("ascii"));
    assert_eq!(
        store.verify_token(&tampered_sig),
        Err(SignatureError::Invalid)
    );

    let other = store
        .signed_url(
            &key("other.pdf"),
            "application/pdf",
            Duration::from_secs(3600),
        )
        .await
        .expect("sign");
    let other_token = other.url.rsplit('/').next().expect("token");
    let (other_body, _) = other_token.split_once('.').expect("parts");
    let swapped_path = format!("{other_body}.{sig}");
    assert_eq!(
        store.verify_token(&swapped_path),
        Err(SignatureError::Invalid)
    );

    let short = store
        .signed_url(&k, "application/pdf", Duration::from_secs(1))
        .await
        .expect("sign");
    let short_token = short.url.rsplit('/').next().expect("token");
    let (short_body, _) = short_token.split_once('.').expect("parts");
    let extended = format!("{short_body}.{sig}");
    assert_eq!(
        store.verify_token(&extended),
        Err(SignatureError::Invalid),
        "expiry was changed"
    );
    assert_eq!(store.verify_token("garbage"), Err(SignatureError::Invalid));
    assert_eq!(store.verify_token(""), Err(SignatureError::Invalid));

    let expired = store
        .signed_url(&k, "application/pdf", Duration::ZERO)
        .await
        .expect("sign");
    let expired_token = expired.url.rsplit('/').next().expect("token");
    assert!(matches!(
        store.verify_token(expired_token),
        Err(SignatureError::Expired { .. })
    ));
}
