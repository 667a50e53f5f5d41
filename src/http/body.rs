//! Reading untrusted request bodies and query strings, naming every bad field.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Map, Value};

use super::{ApiError, FieldError};

/// A JSON request body: `Content-Type: application/json` (or `…+json`), within the body
/// limit, and syntactically JSON. Its fields are checked with [`Fields`].
#[derive(Debug, Clone)]
pub(crate) struct JsonBody(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !declares_json(&req) {
            return Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        parse(&read(req, state).await?).map(JsonBody)
    }
}

/// An optional JSON body: `None` when the request has none; otherwise as [`JsonBody`].
#[derive(Debug, Clone)]
pub(crate) struct OptionalJsonBody(pub(crate) Option<Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = declares_json(&req);
        let bytes = read(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        if !json {
            return Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        parse(&bytes).map(|v| OptionalJsonBody(Some(v)))
    }
}

/// Whether the request says its body is JSON (`application/json` or `…+json`).
fn declares_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// The body's bytes, within the body limit and the read timeout.
async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if stalled(&rejection) {
            ApiError::from_status(StatusCode::REQUEST_TIMEOUT)
        } else {
            ApiError::from_status(rejection.into_response().status())
        }
    })
}

fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_request(format!("the body is not valid JSON: {e}")))
}

/// Whether reading a body failed because it stalled past the server's body read timeout.
fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The route's own path parameter (`{id}`, `{token}`), whatever parameters the prefix it
/// is mounted under adds before it.
#[derive(Debug, Clone)]
pub(crate) struct RouteParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for RouteParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(undecodable)?;
        // Captures come in path order: the prefix's first, the route's own last.
        let last = params.iter().last().map(|(_, v)| RouteParam(v.to_owned()));
        last.ok_or_else(ApiError::internal)
    }
}

/// The answer to a path whose parameters do not decode (percent-encoded bytes that are not
/// UTF-8, such as `%FF`): `400 invalid_id` when it is the `{id}`, `400 invalid_request`
/// for any other parameter (the artifact token, a prefix's own parameters).
pub(crate) fn undecodable(rejection: RawPathParamsRejection) -> ApiError {
    match rejection {
        // axum names the parameter only in its message: "Invalid UTF-8 in `id`".
        RawPathParamsRejection::InvalidUtf8InPathParam(e) if e.to_string().ends_with("`id`") => {
            ApiError::invalid_id_because("the id is not valid percent-encoded UTF-8")
        }
        RawPathParamsRejection::InvalidUtf8InPathParam(_) => {
            ApiError::invalid_request("a path parameter is not valid percent-encoded UTF-8")
        }
        _ => ApiError::internal(),
    }
}

/// Reads the fields of a JSON object one by one, collecting every error, so that a `422`
/// names all bad fields at once.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// The fields of `value`, which must be an object; `prefix` is its location (`body`).
    pub(crate) fn of(value: &'a Value, prefix: &str) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                prefix: prefix.to_owned(),
                errors: Vec::new(),
            }),
            _ => Err(ApiError::field(
                prefix,
                "type_error",
                "must be a JSON object",
            )),
        }
    }

    fn loc(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// Records an error about field `name`.
    pub(crate) fn error(&mut self, name: &str, kind: &str, msg: impl Into<String>) {
        let loc = self.loc(name);
        self.errors.push(FieldError::new(&loc, kind, msg));
    }

    /// Records errors found by a nested reader.
    pub(crate) fn absorb(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    /// The raw value of `name`, `None` when absent or null.
    pub(crate) fn value(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A required field: absent or null is an error.
    pub(crate) fn required(&mut self, name: &str) -> Option<&'a Value> {
        let v = self.value(name);
        if v.is_none() {
            self.error(name, "missing", "field required");
        }
        v
    }

    /// A required array of 1 to `max` items.
    pub(crate) fn required_list(&mut self, name: &str, max: usize) -> Option<&'a [Value]> {
        match self.required(name)?.as_array() {
            Some(items) if (1..=max).contains(&items.len()) => Some(items),
            Some(_) => {
                self.error(name, "out_of_range", format!("must have 1 to {max} {name}"));
                None
            }
            None => {
                self.error(name, "type_error", "must be an array");
                None
            }
        }
    }

    /// An optional string of at most `max` characters.
    pub(crate) fn string(&mut self, name: &str, max: usize) -> Option<String> {
        let v = self.value(name)?;
        self.check_string(name, v, max)
    }

    /// A required string of 1 to `max` characters.
    pub(crate) fn required_string(&mut self, name: &str, max: usize) -> Option<String> {
        let v = self.required(name)?;
        let s = self.check_string(name, v, max)?;
        if s.is_empty() {
            self.error(name, "invalid", "must not be empty");
            return None;
        }
        Some(s)
    }

    fn check_string(&mut self, name: &str, v: &Value, max: usize) -> Option<String> {
        match v.as_str() {
            Some(s) if s.chars().count() <= max => Some(s.to_owned()),
            Some(_) => {
                self.error(
                    name,
                    "too_long",
                    format!("must be at most {max} characters"),
                );
                None
            }
            None => {
                self.error(name, "type_error", "must be a string");
                None
            }
        }
    }

    /// An optional integer within `range`.
    pub(crate) fn int(&mut self, name: &str, range: RangeInclusive<i64>) -> Option<i64> {
        let v = self.value(name)?;
        match v.as_i64() {
            Some(n) if range.contains(&n) => Some(n),
            Some(_) => {
                let msg = format!("must be between {} and {}", range.start(), range.end());
                self.error(name, "out_of_range", msg);
                None
            }
            None => {
                self.error(name, "type_error", "must be an integer");
                None
            }
        }
    }

    /// An optional boolean.
    pub(crate) fn boolean(&mut self, name: &str) -> Option<bool> {
        let v = self.value(name)?;
        let b = v.as_bool();
        if b.is_none() {
            self.error(name, "type_error", "must be true or false");
        }
        b
    }

    /// An integer within `range` or `null`, when present: `Some(None)` for `null`.
    pub(crate) fn nullable_int(
        &mut self,
        name: &str,
        range: RangeInclusive<i64>,
    ) -> Option<Option<i64>> {
        if !self.map.contains_key(name) {
            return None;
        }
        match self.value(name) {
            None => Some(None),
            Some(_) => self.int(name, range).map(Some),
        }
    }

    /// Records an error for every field not in `known`: a change nobody would apply must
    /// not pass for one that was.
    pub(crate) fn refuse_others(&mut self, known: &[&str]) {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for name in unknown {
            self.error(&name, "unknown_field", "is not a field of this object");
        }
    }

    /// `Ok` when every field read so far was good.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        self.into_errors()
            .map_or(Ok(()), |e| Err(ApiError::validation(e)))
    }

    /// The errors found so far, if any.
    pub(crate) fn into_errors(self) -> Option<Vec<FieldError>> {
        (!self.errors.is_empty()).then_some(self.errors)
    }
}

/// Query parameters, read one by one like [`Fields`].
#[derive(Debug)]
pub(crate) struct QueryFields {
    params: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl QueryFields {
    pub(crate) fn new(params: HashMap<String, String>) -> Self {
        QueryFields {
            params,
            errors: Vec::new(),
        }
    }

    /// An optional parameter (present but empty is not absent).
    pub(crate) fn string(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Records an error about parameter `name`.
    pub(crate) fn error(&mut self, name: &str, kind: &str, msg: impl Into<String>) {
        self.errors
            .push(FieldError::new(&format!("query.{name}"), kind, msg));
    }

    /// An optional integer within `range`, or `default`.
    pub(crate) fn int(&mut self, name: &str, range: RangeInclusive<u64>, default: u64) -> u64 {
        let Some(raw) = self.string(name) else {
            return default;
        };
        match raw.parse::<u64>() {
            Ok(n) if range.contains(&n) => n,
            _ => {
                let msg = format!(
                    "must be an integer between {} and {}",
                    range.start(),
                    range.end()
                );
                self.error(name, "out_of_range", msg);
                default
            }
        }
    }

    /// `Ok` when every parameter read so far was good.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_bad_field_is_named() {
        let body = json!({"priority": "high", "max_attempts": 99, "type": 5});
        let mut f = Fields::of(&body, "body").unwrap();
        f.required_string("type", 64);
        f.int("priority", -1000..=1000);
        f.int("max_attempts", 1..=25);
        f.required("input_missing");
        let errors = f.into_errors().unwrap();
        let locs: Vec<String> = errors.iter().map(|e| e.loc.join(".")).collect();
        assert_eq!(
            locs,
            [
                "body.type",
                "body.priority",
                "body.max_attempts",
                "body.input_missing"
            ]
        );
        assert_eq!(errors[2].kind, "out_of_range");
    }

    #[test]
    fn query_integers_are_checked() {
        let mut q = QueryFields::new(HashMap::from([("limit".into(), "0".into())]));
        assert_eq!(q.int("limit", 1..=1000, 50), 50);
        assert_eq!(q.int("after", 0..=u64::MAX, 0), 0);
        assert!(q.finish().is_err());
    }
}
