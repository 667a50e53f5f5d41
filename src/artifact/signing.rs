//! HMAC-signed download URLs for stores that cannot presign.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{ArtifactKey, ArtifactName};
use crate::TenantId;

type HmacSha256 = Hmac<Sha256>;

/// Mints and verifies signed artifact URLs of the form `{base}/artifacts/{token}`.
///
/// The token carries the artifact's key, its content type and the expiry, and an
/// HMAC-SHA256 over all three, so none can be changed without the key. The HTTP adapter's
/// download route calls [`UrlSigner::verify`].
///
/// ```
/// use chrono::{Duration, Utc};
/// use jobworks::{ArtifactKey, ArtifactName, JobId, TenantId, UrlSigner};
/// let signer = UrlSigner::new(b"a secret of at least 32 bytes!!!".to_vec(), "https://api.example.com/v1");
/// let key = ArtifactKey::new(TenantId::new("acme")?, JobId::new(), ArtifactName::new("out/report.pdf")?);
/// let expires = Utc::now() + Duration::hours(1);
/// let url = signer.sign(&key, "application/pdf", expires);
/// let token = url.rsplit('/').next().unwrap();
/// assert_eq!(signer.verify(token, Utc::now()).unwrap().key, key);
/// # Ok::<(), jobworks::Error>(())
/// ```
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
    base_url: String,
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The token is malformed or its signature does not match (tampered with, or signed
    /// with another key).
    #[error("invalid signature")]
    Invalid,
    /// The signature is good but the URL has expired.
    #[error("the URL expired at {expired_at}")]
    Expired {
        /// When it expired.
        expired_at: DateTime<Utc>,
    },
}

/// What a good token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The artifact.
    pub key: ArtifactKey,
    /// The content type to serve it with.
    pub content_type: String,
    /// When the URL expires.
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// `{tenant}/{job}/{name}`
    k: String,
    /// The attempt whose bytes these are (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    a: u32,
    /// Content type.
    c: String,
    /// Expiry, Unix seconds.
    e: i64,
}

impl UrlSigner {
    /// A signer with `secret` (use at least 32 random bytes) for URLs under `base_url`
    /// (where the HTTP adapter is mounted, e.g. `https://api.example.com/v1`).
    pub fn new(secret: impl Into<Vec<u8>>, base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        UrlSigner {
            secret: secret.into(),
            base_url,
        }
    }

    /// A signer with a random secret: its URLs stop working when the process exits.
    pub fn random(base_url: impl Into<String>) -> Self {
        let secret: [u8; 32] = rand::random();
        Self::new(secret.to_vec(), base_url)
    }

    /// The base the URLs are minted under.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }

    /// The token alone (the last path segment of the URL).
    pub fn token(
        &self,
        key: &ArtifactKey,
        content_type: &str,
        expires_at: DateTime<Utc>,
    ) -> String {
        let claims = Claims {
            k: format!("{}/{}/{}", key.tenant, key.job_id, key.name),
            a: key.attempt,
            c: content_type.to_owned(),
            e: expires_at.timestamp(),
        };
        let body = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The full URL: `{base}/artifacts/{token}`.
    pub fn sign(&self, key: &ArtifactKey, content_type: &str, expires_at: DateTime<Utc>) -> String {
        format!(
            "{}/artifacts/{}",
            self.base_url,
            self.token(key, content_type, expires_at)
        )
    }

    /// Checks a token's signature, then its expiry against `now`.
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] when the token was altered or is not one of ours;
    /// [`SignatureError::Expired`] when it is genuine but past its expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<VerifiedToken, SignatureError> {
        let (body, sig) = token.split_once('.').ok_or(SignatureError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| SignatureError::Invalid)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        let claims: Claims = B64
            .decode(body)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SignatureError::Invalid)?;
        let key = parse_key(&claims.k)
            .ok_or(SignatureError::Invalid)?
            .of_attempt(claims.a);
        let expires_at = Utc
            .timestamp_opt(claims.e, 0)
            .single()
            .ok_or(SignatureError::Invalid)?;
        if now >= expires_at {
            return Err(SignatureError::Expired {
                expired_at: expires_at,
            });
        }
        Ok(VerifiedToken {
            key,
            content_type: claims.c,
            expires_at,
        })
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The key a token's `{tenant}/{job}/{name}` claim names (in the job's folder).
fn parse_key(text: &str) -> Option<ArtifactKey> {
    let mut parts = text.splitn(3, '/');
    let tenant = TenantId::new(parts.next()?).ok()?;
    let job_id = parts.next()?.parse().ok()?;
    let name = ArtifactName::new(parts.next()?).ok()?;
    Some(ArtifactKey::new(tenant, job_id, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;

    fn key() -> ArtifactKey {
        ArtifactKey::new(
            TenantId::new("acme").unwrap(),
            JobId::new(),
            ArtifactName::new("r.pdf").unwrap(),
        )
    }

    /// Re-encodes a token's claims after `edit`, keeping the original signature.
    fn forge(token: &str, edit: impl FnOnce(&mut Claims)) -> String {
        let (body, sig) = token.split_once('.').unwrap();
        let mut claims: Claims = serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        edit(&mut claims);
        format!("{}.{sig}", B64.encode(serde_json::to_vec(&claims).unwrap()))
    }

    #[test]
    fn any_changed_claim_breaks_the_signature() {
        let signer = UrlSigner::new(b"k".repeat(32), "http://h/v1/");
        let now = Utc::now();
        let token = signer.token(&key(), "application/pdf", now + chrono::Duration::hours(1));
        assert!(signer.verify(&token, now).is_ok());
        let attempt = signer.token(
            &key().of_attempt(2),
            "application/pdf",
            now + chrono::Duration::hours(1),
        );
        assert_eq!(signer.verify(&attempt, now).unwrap().key.attempt, 2);
        let later = forge(&token, |c| c.e += 3600);
        let elsewhere = forge(&token, |c| c.k = c.k.replace("acme", "globex"));
        let as_html = forge(&token, |c| c.c = "text/html".into());
        let other_attempt = forge(&token, |c| c.a += 1);
        for forged in [later, elsewhere, as_html, other_attempt] {
            assert_eq!(signer.verify(&forged, now), Err(SignatureError::Invalid));
        }
        let other_key = UrlSigner::new(b"x".repeat(32), "http://h/v1");
        assert_eq!(other_key.verify(&token, now), Err(SignatureError::Invalid));
    }

    #[test]
    fn expiry_is_checked_after_the_signature() {
        let signer = UrlSigner::random("http://h");
        let now = Utc::now();
        let expires = now + chrono::Duration::seconds(10);
        let url = signer.sign(&key(), "text/plain", expires);
        assert!(url.starts_with("http://h/artifacts/"));
        let token = url.rsplit('/').next().unwrap();
        assert!(
            signer
                .verify(token, expires - chrono::Duration::seconds(1))
                .is_ok()
        );
        assert!(matches!(
            signer.verify(token, expires),
            Err(SignatureError::Expired { .. })
        ));
        assert!(format!("{signer:?}").contains("redacted"));
    }
}
