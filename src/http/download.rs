//! `GET /artifacts/{token}`: artifact bytes behind an HMAC-signed URL, with `Range`.

use std::ops::Range;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use super::body::RouteParam;
use super::{ApiError, ApiState};
use crate::{Error, SignatureError};

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// The whole object (no header, several ranges, or a header we ignore).
    All,
    /// One range of bytes.
    Part(Range<u64>),
    /// A range that starts past the end.
    Unsatisfiable,
}

/// Reads a single `bytes=` range; anything else is served whole, as RFC 9110 allows.
fn wanted(headers: &HeaderMap, size: u64) -> Wanted {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::All;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        match last.parse::<u64>() {
            Ok(0) => return Wanted::Unsatisfiable,
            Ok(n) => size.saturating_sub(n)..size,
            Err(_) => return Wanted::All,
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Wanted::All;
        };
        let end = match last {
            "" => size,
            last => match last.parse::<u64>() {
                Ok(l) if l >= start => l.saturating_add(1).min(size),
                _ => return Wanted::All,
            },
        };
        start..end
    };
    if range.start >= size {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part(range)
    }
}

/// The byte range to send of an object of `size` bytes (`None`: all of it).
///
/// # Errors
/// `416` when the range starts past the end.
fn part(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    match wanted(headers, size) {
        Wanted::All => Ok(None),
        Wanted::Part(r) => Ok(Some(r)),
        Wanted::Unsatisfiable => Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the artifact has {size} bytes"),
        )
        .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))),
    }
}

/// A `Content-Disposition` value that no file name can break out of.
fn disposition(file_name: &str) -> String {
    let safe: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

/// Download an artifact through a signed URL (stores that cannot presign).
#[utoipa::path(get, path = "/artifacts/{token}", tag = "artifacts",
    params(
        ("token" = String, Path, description = "The signed token of the URL the job view gave"),
        ("Range" = Option<String>, Header, description = "One `bytes=` range"),
    ),
    responses(
        (status = 200, description = "The artifact's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "The signature does not match (`invalid_signature`)", body = super::ErrorBody),
        (status = 404, description = "The artifact no longer exists", body = super::ErrorBody),
        (status = 410, description = "The URL expired (`url_expired`)", body = super::ErrorBody),
        (status = 416, description = "The range starts past the end", body = super::ErrorBody),
    ))]
pub(crate) async fn download(
    State(state): State<ApiState>,
    RouteParam(token): RouteParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let artifacts = state.engine.artifacts();
    let token = artifacts.verify_token(&token).map_err(|e| match e {
        SignatureError::Expired { .. } => {
            ApiError::new(StatusCode::GONE, "url_expired", "the URL has expired")
        }
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "the URL's signature does not match",
        ),
    })?;
    let gone = |e: Error| match e {
        Error::ArtifactNotFound { .. } | Error::NotFound { .. } => {
            ApiError::not_found("the artifact no longer exists")
        }
        e => ApiError::from(e),
    };
    // The size is needed only to resolve a `Range`; a plain download reads none.
    let range = if headers.contains_key(header::RANGE) {
        let size = artifacts.head(&token.key).await.map_err(gone)?.size;
        part(&headers, size)?
    } else {
        None
    };
    let status = match range {
        Some(_) => StatusCode::PARTIAL_CONTENT,
        None => StatusCode::OK,
    };
    let body = artifacts.get(&token.key, range).await.map_err(gone)?;
    let mut response = Response::new(Body::from_stream(body.stream.map_err(|e| {
        tracing::warn!(error = %e, "artifact stream failed");
        std::io::Error::other("artifact stream failed")
    })));
    *response.status_mut() = status;
    let h = response.headers_mut();
    let mut set = |name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, &token.content_type);
    set(
        header::CONTENT_LENGTH,
        &(body.range.end - body.range.start).to_string(),
    );
    set(
        header::CONTENT_DISPOSITION,
        &disposition(token.key.name.file_name()),
    );
    set(header::ACCEPT_RANGES, "bytes");
    set(header::CACHE_CONTROL, "private, no-store");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if status == StatusCode::PARTIAL_CONTENT {
        let r = &body.range;
        set(
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{}", r.start, r.end - 1, body.size),
        );
    }
    Ok(response.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(range: &str, size: u64) -> Wanted {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, range.parse().unwrap());
        wanted(&h, size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(ask("bytes=0-9", 100), Wanted::Part(0..10));
        assert_eq!(ask("bytes=90-", 100), Wanted::Part(90..100));
        assert_eq!(ask("bytes=90-200", 100), Wanted::Part(90..100));
        assert_eq!(ask("bytes=-10", 100), Wanted::Part(90..100));
        assert_eq!(ask("bytes=-500", 100), Wanted::Part(0..100));
        assert_eq!(ask("bytes=100-", 100), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 100), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,5-6", 100), Wanted::All);
        assert_eq!(ask("bytes=9-1", 100), Wanted::All);
        assert_eq!(ask("items=0-1", 100), Wanted::All);
    }

    #[test]
    fn file_names_cannot_break_the_header() {
        assert_eq!(
            disposition("a\"b c.pdf"),
            "attachment; filename=\"a_b_c.pdf\""
        );
    }
}
