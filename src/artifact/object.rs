//! [`ObjectStoreArtifacts`]: the [`ArtifactStore`] over any `object_store` backend.

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

/// `now + ttl`, rounded up to a twelfth of `ttl` (5 minutes for an hour): a URL lives at
/// least `ttl`, and URLs minted for the same artifact a moment apart are equal, so a job's
/// view (and its ETag) stays the same between polls.
fn rounded_expiry(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>> {
    let too_long = || Error::invalid("ttl", "too long");
    let exact = now + chrono::Duration::from_std(ttl).map_err(|_| too_long())?;
    let step = i64::try_from(ttl.as_secs() / 12).map_err(|_| too_long())?;
    if step == 0 {
        return Ok(exact);
    }
    let secs = exact.timestamp() + i64::from(exact.timestamp_subsec_nanos() > 0);
    let rounded = (secs + step - 1) / step * step;
    DateTime::from_timestamp(rounded, 0).ok_or_else(too_long)
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
        let expires_at = rounded_expiry(Utc::now(), ttl)?;
        let url = match &self.presigner {
            Some(p) => p.presign_get(&Self::location(key)?, ttl).await?,
            None => self.signer.sign(key, content_type, expires_at),
        };
        Ok(SignedUrl { url, expires_at })
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
    fn expiries_round_up_to_a_twelfth_of_the_ttl() {
        let hour = Duration::from_secs(3600);
        let now = DateTime::from_timestamp(1_000_000_123, 5).unwrap();
        let at = rounded_expiry(now, hour).unwrap();
        assert_eq!(at.timestamp() % 300, 0);
        assert!(at >= now + chrono::Duration::hours(1));
        assert!(at < now + chrono::Duration::seconds(3600 + 301));
        let later = now + chrono::Duration::seconds(30);
        assert!(rounded_expiry(later, hour).unwrap() - at <= chrono::Duration::seconds(300));
    }
}
