//! Conditional requests: strong ETags, Last-Modified, and the 304 — for stored
//! responses (answered from their metadata, see `stored`) and, through
//! `conditional_get`, for every other HTML or XML page, hashed on its way out.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue, IfNoneMatch};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use sha2::{Digest, Sha256};

/// The request's conditions, read before anything else sees the request.
#[derive(Default)]
pub(super) struct Conditions {
    none_match: Option<NoneMatch>,
    modified_since: Option<u64>,
}

/// If-None-Match: one value is kept as sent and parsed only if it is not simply the
/// ETag being compared (what a client revalidating its copy sends); several header
/// lines are parsed at once.
pub(super) enum NoneMatch {
    Raw(HeaderValue),
    Parsed(IfNoneMatch),
}

impl Conditions {
    pub(super) fn of(headers: &HeaderMap) -> Conditions {
        let mut none_match = headers.get_all(header::IF_NONE_MATCH);
        let none_match = match (none_match.next(), none_match.next()) {
            (None, _) => None,
            (Some(one), None) => Some(NoneMatch::Raw(one.clone())),
            // As `IfNoneMatch::parse`: at least one tag.
            (Some(_), Some(_)) => {
                header::from_comma_delimited(headers.get_all(header::IF_NONE_MATCH))
                    .ok()
                    .filter(|tags: &Vec<header::EntityTag>| !tags.is_empty())
                    .map(|tags| NoneMatch::Parsed(IfNoneMatch::Items(tags)))
            }
        };
        Conditions {
            none_match,
            modified_since: headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<header::HttpDate>().ok())
                .map(|d| unix(SystemTime::from(d))),
        }
    }

    pub(super) fn any(&self) -> bool {
        self.none_match.is_some() || self.modified_since.is_some()
    }

    /// RFC 9110 §13.1: If-None-Match (weak comparison) wins over If-Modified-Since; an
    /// If-None-Match that does not parse is ignored.
    pub(super) fn not_modified(&self, etag: &str, last_modified: Option<u64>) -> bool {
        let parsed;
        let none_match = match &self.none_match {
            Some(NoneMatch::Raw(raw)) if raw.as_bytes() == etag.as_bytes() => return true,
            Some(NoneMatch::Raw(raw)) => {
                parsed = if raw.as_bytes() == b"*" {
                    Some(IfNoneMatch::Any)
                } else {
                    // As `IfNoneMatch::parse`: at least one tag.
                    header::from_comma_delimited(std::iter::once(raw))
                        .ok()
                        .filter(|tags: &Vec<header::EntityTag>| !tags.is_empty())
                        .map(IfNoneMatch::Items)
                };
                parsed.as_ref()
            }
            Some(NoneMatch::Parsed(parsed)) => Some(parsed),
            None => None,
        };
        match none_match {
            Some(IfNoneMatch::Any) => true,
            // Weak comparison: the opaque tags alone.
            Some(IfNoneMatch::Items(tags)) => {
                let ours = etag.trim_matches('"');
                tags.iter().any(|t| t.tag() == ours)
            }
            None => {
                matches!((self.modified_since, last_modified), (Some(since), Some(modified)) if since >= modified)
            }
        }
    }
}

/// The Last-Modified of a response stored at `stored_at_ms`: the second it was made,
/// sent only once that second is over. Two versions made within one second then never
/// share a Last-Modified a client has seen, so If-Modified-Since cannot get a wrong
/// 304 — not for edits in the same second, nor for deletes and renames, which
/// timestamps of the rows shown would miss.
pub(super) fn last_modified(stored_at_ms: u64, now_ms: u64) -> Option<u64> {
    let second = stored_at_ms / 1000;
    (now_ms / 1000 > second).then_some(second)
}

/// A strong validator: a hash of the exact bytes.
pub fn strong_etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

pub(super) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// ETag and 304 for responses the response cache does not handle (HTML pages): the
/// body is hashed once on its way out. Pages get `Cache-Control: no-cache` unless they
/// set their own: browsers revalidate (cheap with the ETag) and never show a page older
/// than the last write.
pub async fn conditional_get(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let conditions = Conditions::of(req.headers());
    let res = next.call(req).await?;
    let applies = is_get
        && res.status() == StatusCode::OK
        && !res.headers().contains_key(header::ETAG)
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/html") || ct.contains("xml"));
    if !applies {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let bytes = body::to_bytes(body)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
    let etag = strong_etag(&bytes);
    let headers = head.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if conditions.not_modified(&etag, None) {
        let mut not_modified = HttpResponse::NotModified();
        for (name, value) in head.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                not_modified.append_header((name.clone(), value.clone()));
            }
        }
        return Ok(ServiceResponse::new(req, not_modified.finish()));
    }
    Ok(ServiceResponse::new(
        req,
        head.set_body(bytes).map_into_boxed_body(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn conditions(headers: &[(&'static str, &str)]) -> Conditions {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Conditions::of(&map)
    }

    #[test]
    fn if_none_match_is_compared_weakly_whatever_its_form() {
        let etag = "\"abc\"";
        for (sent, matches) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", W/\"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("\"x\", \"y\"", false),
        ] {
            assert_eq!(
                conditions(&[("if-none-match", sent)]).not_modified(etag, Some(0)),
                matches,
                "{sent}"
            );
        }
        let two_lines = conditions(&[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")]);
        assert!(two_lines.not_modified(etag, None));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since_unless_it_does_not_parse() {
        let since = "Thu, 01 Jan 2026 00:00:00 GMT";
        let modified = Some(1_700_000_000); // before `since`
        let other = conditions(&[("if-none-match", "\"x\""), ("if-modified-since", since)]);
        assert!(!other.not_modified("\"abc\"", modified));
        let garbage = conditions(&[("if-none-match", "not a tag"), ("if-modified-since", since)]);
        assert!(garbage.not_modified("\"abc\"", modified));
        assert!(!garbage.not_modified("\"abc\"", Some(1_800_000_000)));
    }
}
