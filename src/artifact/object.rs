//! [`ObjectStoreArtifacts`]: the [`ArtifactStore`] over any `object_store` backend.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use super::{
    ArtifactBody, ArtifactKey, ArtifactName, ArtifactStore, ByteStream, ObjectInfo, SignatureError,
    SignedUrl, StoredObject, UrlSigner, VerifiedToken,
};
use crate::{Error, JobId, Result, TenantId};

/// Streams up to this size are stored in one request; larger ones in parts.
const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

/// Something that presigns download URLs for an object store (S3, GCS, Azure).
///
/// With the `presign` feature every `object_store::signer::Signer` is one; pass it to
/// [`ObjectStoreArtifacts::with_presigner`] beside the store (an `Arc<dyn ObjectStore>`
/// cannot be asked whether it can sign).
#[async_trait]
pub trait Presigner: Send + Sync + fmt::Debug + 'static {
    /// A URL for `GET path` valid for `ttl`.
    async fn presign_get(&self, path: &Path, ttl: Duration) -> Result<String>;
}

#[cfg(feature = "presign")]
#[async_trait]
impl<T: object_store::signer::Signer> Presigner for T {
    async fn presign_get(&self, path: &Path, ttl: Duration) -> Result<String> {
        let url = self
            .signed_url(object_store::signer::Method::GET, path, ttl)
            .await
            .map_err(backend)?;
        Ok(url.to_string())
    }
}

/// Artifacts in an `object_store` backend (`InMemory`, `LocalFileSystem`, S3, …).
///
/// Signed URLs come from the [`Presigner`] when there is one, else from the [`UrlSigner`]:
/// HMAC tokens that the HTTP adapter's download route verifies.
///
/// ```
/// use std::sync::Arc;
/// use jobworks::{ObjectStoreArtifacts, UrlSigner};
/// let dir = std::env::temp_dir().join("jobworks-doc-artifacts");
/// std::fs::create_dir_all(&dir)?;
/// let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
/// let artifacts = ObjectStoreArtifacts::new(Arc::new(fs), UrlSigner::random("http://127.0.0.1:8080"));
/// let engine = jobworks::Engine::builder().artifacts(artifacts).build()?;
/// # drop(engine);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ObjectStoreArtifacts {
    store: Arc<dyn ObjectStore>,
    signer: UrlSigner,
    presigner: Option<Arc<dyn Presigner>>,
    minted: Arc<Minted>,
}

fn backend(e: object_store::Error) -> Error {
    Error::Backend {
        backend: "object_store",
        source: Box::new(e),
    }
}

fn map_err(key: &ArtifactKey) -> impl Fn(object_store::Error) -> Error + '_ {
    move |e| match e {
        object_store::Error::NotFound { .. } => Error::ArtifactNotFound {
            id: key.job_id,
            name: key.name.to_string(),
        },
        e => backend(e),
    }
}

/// When a URL minted at `now` for `ttl` stops working: the start of `now`'s window (a
/// twelfth of `ttl`, so 5 minutes for an hour) plus `ttl`, in whole seconds. Never later
/// than `now + ttl`, at least `ttl - ttl / 12` away, and the same for every URL minted
/// in one window, so a job's view (and its ETag) stays the same between polls. TTLs under
/// 12 s have no window.
fn window_expiry(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>> {
    let too_long = || Error::invalid("ttl", "too long");
    let ttl = i64::try_from(ttl.as_secs()).map_err(|_| too_long())?;
    let step = ttl / 12;
    let now = now.timestamp();
    let start = if step > 0 {
        now - now.rem_euclid(step)
    } else {
        now
    };
    let at = start.checked_add(ttl).ok_or_else(too_long)?;
    DateTime::from_timestamp(at, 0).ok_or_else(too_long)
}

/// The expiry a presigned URL states for itself: S3's `X-Amz-Date` + `X-Amz-Expires`,
/// GCS's `X-Goog-Date` + `X-Goog-Expires`, or Azure's `se`.
fn stated_expiry(url: &str) -> Option<DateTime<Utc>> {
    let query = url.split_once('?')?.1;
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.eq_ignore_ascii_case(name).then_some(v)
        })
    };
    let signed_at = |v: &str| {
        chrono::NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    };
    for (date, expires) in [
        ("X-Amz-Date", "X-Amz-Expires"),
        ("X-Goog-Date", "X-Goog-Expires"),
    ] {
        if let (Some(d), Some(e)) = (param(date), param(expires)) {
            let seconds: i64 = e.parse().ok()?;
            return signed_at(d)?.checked_add_signed(chrono::Duration::seconds(seconds));
        }
    }
    let se = param("se")?.replace("%3A", ":").replace("%3a", ":");
    DateTime::parse_from_rfc3339(&se)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Presigned URLs already minted, per object and expiry: a presigner signs with the
/// current time, so each URL is minted once per window and handed out again.
#[derive(Debug, Default)]
struct Minted(std::sync::Mutex<HashMap<Slot, SignedUrl>>);

/// An object's path and the expiry of its window.
type Slot = (String, DateTime<Utc>);

/// Most presigned URLs remembered; past that, the expired ones are dropped.
const MAX_MINTED: usize = 4096;

impl Minted {
    fn get(&self, slot: &Slot) -> Option<SignedUrl> {
        let minted = self.0.lock().unwrap_or_else(|e| e.into_inner());
        minted.get(slot).cloned()
    }

    fn put(&self, slot: Slot, url: SignedUrl, now: DateTime<Utc>) {
        let mut minted = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if minted.len() >= MAX_MINTED {
            minted.retain(|(_, w), _| *w > now);
            if minted.len() >= MAX_MINTED {
                minted.clear();
            }
        }
        minted.insert(slot, url);
    }
}

fn checksum(hasher: Sha256) -> String {
    let digest = hasher.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl ObjectStoreArtifacts {
    /// Artifacts in `store`, with signed URLs from `signer`.
    pub fn new(store: Arc<dyn ObjectStore>, signer: UrlSigner) -> Self {
        ObjectStoreArtifacts {
            store,
            signer,
            presigner: None,
            minted: Arc::default(),
        }
    }

    /// Artifacts in memory with a random signing key: for tests and demos.
    pub fn in_memory(base_url: impl Into<String>) -> Self {
        Self::new(Arc::new(InMemory::new()), UrlSigner::random(base_url))
    }

    /// Uses `presigner` for signed URLs instead of HMAC tokens.
    pub fn with_presigner(mut self, presigner: Arc<dyn Presigner>) -> Self {
        self.presigner = Some(presigner);
        self
    }

    /// Artifacts in the S3 bucket `bucket`, configured from the environment as the AWS
    /// tools are (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and for an
    /// S3-compatible server `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true`), with S3's own
    /// presigned URLs: clients download from the bucket, not through the host.
    ///
    /// ```no_run
    /// let artifacts = jobworks::ObjectStoreArtifacts::s3_from_env("reports")?;
    /// let engine = jobworks::Engine::builder().artifacts(artifacts).build()?;
    /// # drop(engine);
    /// # Ok::<(), jobworks::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Backend`] when the variables do not make a client (no region, a bad
    /// endpoint).
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub fn s3_from_env(bucket: &str) -> Result<Self> {
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(backend)?;
        let s3 = Arc::new(s3);
        // Never used to sign: the presigner signs every URL.
        let unused = UrlSigner::random(format!("s3://{bucket}"));
        Ok(Self::new(s3.clone(), unused).with_presigner(s3))
    }

    /// The HMAC signer.
    pub fn url_signer(&self) -> &UrlSigner {
        &self.signer
    }

    fn location(key: &ArtifactKey) -> Result<Path> {
        Path::parse(key.path())
            .map_err(|_| Error::invalid("artifact name", "is not a valid storage path"))
    }

    fn job_prefix(tenant: &TenantId, job_id: JobId) -> Path {
        Path::from_iter([tenant.as_str().to_owned(), job_id.to_string()])
    }

    async fn put_multipart(
        &self,
        key: &ArtifactKey,
        location: &Path,
        first: Vec<Bytes>,
        mut rest: ByteStream,
        mut hasher: Sha256,
        mut size: u64,
    ) -> Result<StoredObject> {
        let upload = self
            .store
            .put_multipart(location)
            .await
            .map_err(map_err(key))?;
        let mut writer = WriteMultipart::new(upload);
        for chunk in first {
            writer.put(chunk);
        }
        loop {
            let chunk = match rest.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let _ = writer.abort().await;
                    return Err(Error::Backend {
                        backend: "artifact stream",
                        source: e,
                    });
                }
            };
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(backend(e));
            }
            hasher.update(&chunk);
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        writer.finish().await.map_err(backend)?;
        Ok(StoredObject {
            size,
            checksum: checksum(hasher),
        })
    }
}

#[async_trait]
impl ArtifactStore for ObjectStoreArtifacts {
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<StoredObject> {
        let location = Self::location(key)?;
        let mut hasher = Sha256::new();
        hasher.update(&data);
        let size = data.len() as u64;
        self.store
            .put(&location, PutPayload::from_bytes(data))
            .await
            .map_err(map_err(key))?;
        Ok(StoredObject {
            size,
            checksum: checksum(hasher),
        })
    }

    async fn put_stream(&self, key: &ArtifactKey, mut data: ByteStream) -> Result<StoredObject> {
        let location = Self::location(key)?;
        let mut hasher = Sha256::new();
        let mut buffered = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|source| Error::Backend {
                backend: "artifact stream",
                source,
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            buffered.push(chunk);
            if size > MULTIPART_THRESHOLD as u64 {
                return self
                    .put_multipart(key, &location, buffered, data, hasher, size)
                    .await;
            }
        }
        let payload: PutPayload = buffered.into_iter().collect();
        self.store
            .put(&location, payload)
            .await
            .map_err(map_err(key))?;
        Ok(StoredObject {
            size,
            checksum: checksum(hasher),
        })
    }

    async fn head(&self, key: &ArtifactKey) -> Result<ObjectInfo> {
        let meta = self
            .store
            .head(&Self::location(key)?)
            .await
            .map_err(map_err(key))?;
        Ok(ObjectInfo {
            name: key.name.clone(),
            size: meta.size,
            last_modified: meta.last_modified,
        })
    }

    async fn get(&self, key: &ArtifactKey, range: Option<Range<u64>>) -> Result<ArtifactBody> {
        let location = Self::location(key)?;
        let size = match &range {
            Some(_) => self.head(key).await?.size,
            None => 0,
        };
        let range = match range {
            Some(r) if r.start >= size || r.start >= r.end => {
                return Err(Error::invalid("range", "not satisfiable"));
            }
            Some(r) => Some(GetRange::Bounded(r.start..r.end.min(size))),
            None => None,
        };
        let result = self
            .store
            .get_opts(&location, GetOptions::new().with_range(range))
            .await
            .map_err(map_err(key))?;
        let size = result.meta.size;
        let range = result.range.clone();
        let stream = result.into_stream().map_err(backend).boxed();
        Ok(ArtifactBody {
            size,
            range,
            stream,
        })
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        match self.store.delete(&Self::location(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, tenant: &TenantId, job_id: JobId) -> Result<Vec<ObjectInfo>> {
        let prefix = Self::job_prefix(tenant, job_id);
        let depth = prefix.parts().count();
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(backend)?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .filter_map(|meta| {
                let name: Vec<_> = meta.location.parts().skip(depth).collect();
                let name = name
                    .iter()
                    .map(|p| p.as_ref())
                    .collect::<Vec<_>>()
                    .join("/");
                Some(ObjectInfo {
                    name: ArtifactName::new(name).ok()?,
                    size: meta.size,
                    last_modified: meta.last_modified,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn signed_url(
        &self,
        key: &ArtifactKey,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl> {
        let now = Utc::now();
        let expires_at = window_expiry(now, ttl)?;
        let Some(presigner) = &self.presigner else {
            let url = self.signer.sign(key, content_type, expires_at);
            return Ok(SignedUrl { url, expires_at });
        };
        let slot = (key.path(), expires_at);
        if let Some(minted) = self.minted.get(&slot) {
            return Ok(minted);
        }
        // Ask for a second less than is left, so that the presigner's own clock, read a
        // moment later, cannot carry the URL past `expires_at`; report what the URL itself
        // states where it says so.
        let left = (expires_at - now).num_seconds().saturating_sub(1).max(1);
        let url = presigner
            .presign_get(&Self::location(key)?, Duration::from_secs(left as u64))
            .await?;
        let stated = stated_expiry(&url).filter(|at| *at <= expires_at);
        let signed = SignedUrl {
            url,
            expires_at: stated.unwrap_or(expires_at),
        };
        self.minted.put(slot, signed.clone(), now);
        Ok(signed)
    }

    fn verify_token(&self, token: &str) -> std::result::Result<VerifiedToken, SignatureError> {
        if self.presigner.is_some() {
            return Err(SignatureError::Invalid);
        }
        self.signer.verify(token, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_windowed_and_never_past_the_ttl() {
        let hour = Duration::from_secs(3600);
        let now = DateTime::from_timestamp(1_000_000_123, 5).unwrap();
        let at = window_expiry(now, hour).unwrap();
        assert_eq!(at.timestamp() % 300, 0);
        assert!(at <= now + chrono::Duration::hours(1));
        assert!(at > now + chrono::Duration::minutes(55));
        // Everything in one window gets the same expiry; the next window the next one.
        let start = DateTime::from_timestamp(at.timestamp() - 3600, 0).unwrap();
        for offset in [0, 1, 150, 299] {
            let t = start + chrono::Duration::seconds(offset);
            assert_eq!(window_expiry(t, hour).unwrap(), at, "{offset}");
        }
        let next = start + chrono::Duration::seconds(300);
        assert_eq!(
            window_expiry(next, hour).unwrap(),
            at + chrono::Duration::minutes(5)
        );
        // No window below 12 s: exactly the TTL, in whole seconds.
        let short = window_expiry(now, Duration::from_secs(5)).unwrap();
        assert_eq!(short.timestamp(), now.timestamp() + 5);
    }

    #[test]
    fn presigned_urls_state_their_expiry() {
        let s3 = "https://b.s3/k?X-Amz-Algorithm=AWS4&X-Amz-Date=20261201T101500Z&X-Amz-Expires=3599&X-Amz-Signature=ab";
        let at = stated_expiry(s3).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T11:14:59+00:00");
        let gcs = "https://g/k?X-Goog-Date=20261201T101500Z&X-Goog-Expires=60";
        assert_eq!(
            stated_expiry(gcs).unwrap().to_rfc3339(),
            "2026-12-01T10:16:00+00:00"
        );
        let azure = "https://a/k?sv=2021&se=2026-12-01T11%3A00%3A00Z&sig=x";
        assert_eq!(
            stated_expiry(azure).unwrap().to_rfc3339(),
            "2026-12-01T11:00:00+00:00"
        );
        assert_eq!(stated_expiry("https://x/k"), None);
    }

    /// Signs like S3: with the current time and the expiry asked for.
    #[derive(Debug, Default)]
    struct ClockSigner(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Presigner for ClockSigner {
        async fn presign_get(&self, path: &Path, ttl: Duration) -> Result<String> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let date = Utc::now().format("%Y%m%dT%H%M%SZ");
            let secs = ttl.as_secs();
            Ok(format!(
                "https://s3/{path}?X-Amz-Date={date}&X-Amz-Expires={secs}&n={n}"
            ))
        }
    }

    #[tokio::test]
    async fn a_presigned_url_is_minted_once_per_window_and_dies_when_it_says() {
        let signer = Arc::new(ClockSigner::default());
        let artifacts = ObjectStoreArtifacts::in_memory("http://h").with_presigner(signer.clone());
        let key = ArtifactKey::new(
            TenantId::new("acme").unwrap(),
            JobId::new(),
            ArtifactName::new("r.pdf").unwrap(),
        )
        .of_attempt(1);
        let hour = Duration::from_secs(3600);
        let before = Utc::now();
        let first = artifacts
            .signed_url(&key, "application/pdf", hour)
            .await
            .unwrap();
        let second = artifacts
            .signed_url(&key, "application/pdf", hour)
            .await
            .unwrap();
        assert_eq!(
            first, second,
            "one URL per window, so polls keep their ETag"
        );
        assert_eq!(signer.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(stated_expiry(&first.url), Some(first.expires_at));
        assert!(
            first.expires_at <= before + chrono::Duration::hours(1) + chrono::Duration::seconds(1)
        );
        assert!(first.expires_at > before + chrono::Duration::minutes(54));
        let other = artifacts
            .signed_url(&key.clone().of_attempt(2), "application/pdf", hour)
            .await
            .unwrap();
        assert_ne!(other.url, first.url, "another object, another URL");
    }
}
