//! ETags and conditional answers: every job response carries one, and `If-None-Match`
//! gets `304`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

/// A strong ETag of a response body.
pub(crate) fn etag_of(body: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

/// Whether `If-None-Match` names `etag` (or `*`); weak tags compare by their opaque part.
pub(crate) fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Whether the request's `If-None-Match` names the ETag `body` would be served with.
pub(crate) fn client_has(
    request: &HeaderMap,
    body: &impl serde::Serialize,
) -> Result<bool, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|_| ApiError::internal())?;
    Ok(matches_etag(request, &etag_of(&bytes)))
}

/// A JSON response with an ETag; `304` when the client already has it.
pub(crate) fn tagged_json(
    status: StatusCode,
    body: &impl serde::Serialize,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|_| ApiError::internal())?;
    let etag = etag_of(&bytes);
    let mut response = if matches_etag(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (status, bytes).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_lists_and_weak_forms() {
        let tag = etag_of(b"{}");
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            format!("\"x\", W/{tag}").parse().unwrap(),
        );
        assert!(matches_etag(&h, &tag));
        assert!(!matches_etag(&HeaderMap::new(), &tag));
    }
}
