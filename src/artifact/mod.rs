//! Artifacts: the [`ArtifactStore`] trait, safe names, and signed URLs.

mod object;
mod signing;

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::{BoxError, Error, JobId, Result, TenantId};

pub use object::{ObjectStoreArtifacts, Presigner};
pub use signing::{SignatureError, UrlSigner, VerifiedToken};

/// How long signed URLs last unless asked otherwise: one hour.
pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(3600);

/// Longest artifact name, in bytes.
pub const MAX_ARTIFACT_NAME_LEN: usize = 255;

/// A safe relative artifact name such as `report.pdf` or `pages/001.png`.
///
/// Refused: the empty name, absolute paths, `.` and `..` segments, empty segments,
/// backslashes, control characters, and names over 255 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactName(String);

impl ArtifactName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`Error::Invalid`] with field `artifact name` and the reason.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bad = |why: &'static str| Err(Error::invalid("artifact name", why));
        if name.is_empty() {
            return bad("must not be empty");
        }
        if name.len() > MAX_ARTIFACT_NAME_LEN {
            return bad("must be at most 255 bytes");
        }
        if name.chars().any(char::is_control) {
            return bad("must not contain control characters");
        }
        if name.starts_with('/') {
            return bad("must be relative");
        }
        if name.contains('\\') {
            return bad("must not contain backslashes");
        }
        for segment in name.split('/') {
            match segment {
                "" => return bad("must not contain empty segments"),
                "." | ".." => return bad("must not contain . or .. segments"),
                _ => {}
            }
        }
        if object_store::path::Path::parse(&name).is_err() {
            return bad("is not a valid storage path");
        }
        Ok(ArtifactName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment, for `Content-Disposition`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactName({:?})", self.0)
    }
}

/// Where an artifact's bytes live: `{tenant}/{job id}/{attempt}/{name}`.
///
/// The bytes belong to the attempt that wrote them, so a stalled attempt whose lease was
/// lost can never replace the live attempt's bytes; its record is refused, and what it
/// wrote is garbage that goes with the job. Attempt 0 names the job's folder itself
/// (`{tenant}/{job id}/{name}`: artifacts recorded before keys had attempts, and
/// [`ObjectInfo::name`] as [`ArtifactStore::list`] gives it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The job.
    pub job_id: JobId,
    /// The attempt that wrote it (0: none, directly in the job's folder).
    pub attempt: u32,
    /// The artifact's name within the job.
    pub name: ArtifactName,
}

impl ArtifactKey {
    /// The key of `name` in the folder of job `job_id` of `tenant` (attempt 0).
    pub fn new(tenant: TenantId, job_id: JobId, name: ArtifactName) -> Self {
        ArtifactKey {
            tenant,
            job_id,
            attempt: 0,
            name,
        }
    }

    /// The same name, in the folder of `attempt`.
    pub fn of_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The key of a recorded artifact of job `job_id` of `tenant`: its name, in the
    /// folder of the attempt that wrote it.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the record's name is not a safe name.
    pub fn of_record(tenant: TenantId, job_id: JobId, artifact: &crate::Artifact) -> Result<Self> {
        let name = ArtifactName::new(artifact.name.as_str())?;
        Ok(ArtifactKey::new(tenant, job_id, name).of_attempt(artifact.attempt))
    }

    /// `{tenant}/{job id}/{attempt}/{name}`, or `{tenant}/{job id}/{name}` for attempt 0.
    pub fn path(&self) -> String {
        match self.attempt {
            0 => format!("{}/{}/{}", self.tenant, self.job_id, self.name),
            n => format!("{}/{}/{n}/{}", self.tenant, self.job_id, self.name),
        }
    }
}

/// What storing bytes produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Bytes written.
    pub size: u64,
    /// `sha256:<hex>` of the bytes.
    pub checksum: String,
}

/// An object as the store describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its path within the job's folder: `{attempt}/{name}` (or `{name}` for attempt 0),
    /// so that `ArtifactKey::new(tenant, job, info.name)` addresses it.
    pub name: ArtifactName,
    /// Its size.
    pub size: u64,
    /// When it was last written.
    pub last_modified: DateTime<Utc>,
}

/// A download in progress.
pub struct ArtifactBody {
    /// The whole object's size.
    pub size: u64,
    /// The byte range being sent.
    pub range: Range<u64>,
    /// The bytes of `range`.
    pub stream: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for ArtifactBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactBody")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A URL a client may fetch without credentials until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// The URL.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A stream of bytes to store; errors abort the upload.
pub type ByteStream = BoxStream<'static, std::result::Result<Bytes, BoxError>>;

/// Where artifact bytes live.
///
/// [`ObjectStoreArtifacts`] implements it over any `object_store` backend.
#[async_trait]
pub trait ArtifactStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `data` under `key`, replacing what was there.
    async fn put(&self, key: &ArtifactKey, data: Bytes) -> Result<StoredObject>;

    /// Stores a stream under `key`; large streams are uploaded in parts.
    async fn put_stream(&self, key: &ArtifactKey, data: ByteStream) -> Result<StoredObject>;

    /// Describes the object at `key`.
    async fn head(&self, key: &ArtifactKey) -> Result<ObjectInfo>;

    /// Reads the object at `key`, or the part of it in `range` (clamped to its size).
    async fn get(&self, key: &ArtifactKey, range: Option<Range<u64>>) -> Result<ArtifactBody>;

    /// Deletes the object at `key`; deleting a missing object succeeds.
    async fn delete(&self, key: &ArtifactKey) -> Result<()>;

    /// The objects stored for a job.
    async fn list(&self, tenant: &TenantId, job_id: JobId) -> Result<Vec<ObjectInfo>>;

    /// A URL to download `key` until `ttl` from now, served as `content_type`.
    async fn signed_url(
        &self,
        key: &ArtifactKey,
        content_type: &str,
        ttl: Duration,
    ) -> Result<SignedUrl>;

    /// Checks a token minted by [`signed_url`](Self::signed_url), for stores whose URLs
    /// point at the HTTP adapter's download route. Stores that presign answer
    /// [`SignatureError::Invalid`] to every token.
    fn verify_token(&self, token: &str) -> std::result::Result<VerifiedToken, SignatureError>;

    /// Deletes every object of a job.
    async fn delete_job(&self, tenant: &TenantId, job_id: JobId) -> Result<()> {
        for info in self.list(tenant, job_id).await? {
            let key = ArtifactKey::new(tenant.clone(), job_id, info.name);
            self.delete(&key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "..",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\0b",
            "tab\there",
        ] {
            assert!(ArtifactName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ArtifactName::new("x".repeat(256)).is_err());
        for good in [
            "report.pdf",
            "pages/001.png",
            "a b.txt",
            "ünï.txt",
            "..hidden",
        ] {
            assert!(ArtifactName::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn keys_belong_to_their_attempt() {
        let id = JobId::new();
        let key = ArtifactKey::new(
            TenantId::new("acme:p1").unwrap(),
            id,
            ArtifactName::new("out/r.pdf").unwrap(),
        );
        assert_eq!(key.path(), format!("acme:p1/{id}/out/r.pdf"));
        assert_eq!(
            key.clone().of_attempt(3).path(),
            format!("acme:p1/{id}/3/out/r.pdf")
        );
        assert_ne!(
            key.clone().of_attempt(1).path(),
            key.clone().of_attempt(2).path()
        );
        assert_eq!(key.name.file_name(), "r.pdf");
    }
}
