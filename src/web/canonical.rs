//! One canonical form of a request, used by the handlers and by the cache key alike, so
//! no spelling of a URL can be answered one way and stored under another.
//!
//! - The path: percent-escapes of unreserved characters (`%62` for `b`) are decoded and
//!   the other escapes written in upper case; a request spelled otherwise is redirected
//!   (308) there, so `/%62log/x/` and `/blog/x/` are one URL with one cache policy.
//! - The query: names and values decoded once (`+` and `%20` alike, either hex case),
//!   empty values dropped, and only the parameters the route reads kept (its `params`
//!   in `web::routes`): others are ignored by the handler *and* left out of the key. A
//!   parameter given twice is refused (400), since which one was meant cannot be told;
//!   so is a value out of its parameter's bounds (400, naming it); a value in a
//!   non-canonical spelling (`page=02`, `featured=1`) is redirected to its canonical one.
//!
//! `check` runs before anything else reads the request and leaves its `Params` on it;
//! handlers read them through the `Params` extractor, and the response cache keys on
//! them (a request without them is not stored).

use std::future::{ready, Ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::web::error::ApiError;
use crate::web::routes::Param;

/// The parameters a route reads, decoded, in the order of its `PARAMS` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(&'static str, String)>,
}

/// Why a request is not answered as spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The same resource under its canonical URL.
    Redirect(String),
    /// A parameter given more than once.
    Duplicate(&'static str),
    /// A value out of its parameter's bounds (`web::routes::Kind`), and why.
    Invalid(&'static str, String),
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name=value&…` in canonical order and encoding: the query part of cache keys and
    /// of redirects.
    pub fn query_string(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            out.append_pair(name, value);
        }
        out.finish()
    }

    /// One value encoded as `query_string` encodes it (for links built by templates).
    pub fn encode(value: &str) -> String {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
    }

    /// The page number (`page`, checked to be from 1 by `parse`); 1 when not given.
    pub fn page(&self) -> i64 {
        self.get("page").and_then(|p| p.parse().ok()).unwrap_or(1)
    }

    /// A `true`/`false` parameter (checked by `parse`), if given.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v == "true")
    }

    /// The request's parameters as `check` parsed them, or parsed now if `check` has not
    /// run on it (a refused query then reads as none: `check` answers it).
    pub fn of(req: &HttpRequest) -> Params {
        if let Some(params) = req.extensions().get::<Params>() {
            return params.clone();
        }
        Params::parse(req.path(), req.query_string()).unwrap_or_default()
    }

    /// Parses a query string for the route at `path` by the route table's parameters.
    pub fn parse(path: &str, query: &str) -> Result<Params, Refusal> {
        let read: &[Param] = crate::web::routes::find(path).map_or(&[], |r| r.params);
        let mut pairs: Vec<(&'static str, String)> = Vec::new();
        let mut respelled = false;
        if !query.is_empty() && !read.is_empty() {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                let Some(param) = read.iter().find(|p| p.name == name) else {
                    continue;
                };
                let name = param.name;
                if pairs.iter().any(|(n, _)| *n == name) {
                    return Err(Refusal::Duplicate(name));
                }
                let value = value.trim();
                if value.is_empty() {
                    continue;
                }
                let canonical = param
                    .kind
                    .canonical(value)
                    .map_err(|why| Refusal::Invalid(name, why))?;
                respelled |= canonical != value;
                pairs.push((name, canonical));
            }
            pairs.sort_by_key(|(name, _)| read.iter().position(|p| p.name == *name));
        }
        if let Some(missing) = read
            .iter()
            .find(|p| p.required && !pairs.iter().any(|(n, _)| *n == p.name))
        {
            return Err(Refusal::Invalid(
                missing.name,
                missing.kind.missing().into(),
            ));
        }
        // A parameter read only with another that is absent: dropped, by a redirect.
        let given: Vec<&'static str> = pairs.iter().map(|(n, _)| *n).collect();
        let before = pairs.len();
        pairs.retain(|(name, _)| {
            read.iter()
                .find(|p| p.name == *name)
                .and_then(|p| p.needs)
                .is_none_or(|needed| given.contains(&needed))
        });
        respelled |= pairs.len() != before;
        let params = Params { pairs };
        match respelled {
            false => Ok(params),
            true => Err(Refusal::Redirect(with_query(path, &params))),
        }
    }
}

fn with_query(path: &str, params: &Params) -> String {
    match params.query_string() {
        q if q.is_empty() => path.to_string(),
        q => format!("{path}?{q}"),
    }
}

/// The canonical spelling of a raw path, if it differs: unreserved characters decoded,
/// other escapes in upper case, and no `.` or `..` segment (resolved as RFC 3986 says,
/// after decoding, so `/static/%2e%2e/x` is `/x`).
pub fn canonical_path(raw: &str) -> Option<String> {
    let decoded = match raw.contains('%') {
        true => decode_unreserved(raw)?,
        false => raw.to_string(),
    };
    let resolved = remove_dot_segments(&decoded);
    (resolved != raw).then_some(resolved)
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments dropped, `..` removes the one
/// before it (never above the root); a path ending in one keeps its trailing slash.
fn remove_dot_segments(path: &str) -> String {
    let is_dot = |s: &str| s == "." || s == "..";
    if !path.split('/').any(is_dot) {
        return path.to_string();
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// Unreserved characters decoded, other escapes in upper case.
fn decode_unreserved(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escape {
            Some(b) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b),
            Some(b) => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
            None => {
                out.push(bytes[i]);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    String::from_utf8(out).ok()
}

/// The middleware (see `startup`): redirects non-canonical spellings, refuses
/// duplicated parameters, and leaves the parsed `Params` for everything inside.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let refusal = match canonical_path(req.path()) {
        Some(path) => {
            let query = req.query_string();
            Some(Refusal::Redirect(match query.is_empty() {
                true => path,
                false => format!("{path}?{query}"),
            }))
        }
        // Left for everything inside, the response cache's key included (it stores
        // nothing for a request this has not checked).
        None => match Params::parse(req.path(), req.query_string()) {
            Ok(params) => {
                req.extensions_mut().insert(params);
                None
            }
            Err(refusal) => Some(refusal),
        },
    };
    let Some(refusal) = refusal else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let res = match refusal {
        Refusal::Redirect(to) => HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, to))
            .finish(),
        Refusal::Duplicate(name) => bad_request(&req, name, "given more than once".into()),
        Refusal::Invalid(name, why) => bad_request(&req, name, why),
    };
    Ok(req.into_response(res))
}

/// A 400 naming the parameter: JSON under `/api/`, else a page of its own (this runs
/// outside the error-page layer, before the response cache).
fn bad_request(req: &ServiceRequest, name: &'static str, why: String) -> HttpResponse {
    if req.path().starts_with("/api/") {
        return ApiError::bad(name, why).error_response();
    }
    let why = tera::escape_html(&why);
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>Bad request</title><h1>Bad request</h1>\
             <p>The parameter “{name}” in the address: {why}.</p>"
        ))
}

impl FromRequest for Params {
    type Error = actix_web::Error;
    type Future = Ready<Result<Params, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Params::of(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_decoded_once_and_unread_parameters_dropped() {
        let p = Params::parse("/api/posts/", "t%61g=ai%2Dtools&utm_source=x&P%41GE=3").unwrap();
        assert_eq!(p.get("tag"), Some("ai-tools"));
        assert_eq!(p.get("page"), None, "names are case-sensitive");
        assert_eq!(p.query_string(), "tag=ai-tools");
        let p = Params::parse("/api/posts/", "tag=x&page=2").unwrap();
        let q = Params::parse("/api/posts/", "page=2&tag=x").unwrap();
        assert_eq!(p, q);
        assert_eq!(p.query_string(), "page=2&tag=x");
        assert_eq!(Params::parse("/", "page=2").unwrap(), Params::default());
        assert_eq!(
            Params::parse("/blog/x/", "page=2").unwrap(),
            Params::default()
        );
    }

    #[test]
    fn duplicates_are_refused_and_respellings_redirected() {
        assert_eq!(
            Params::parse("/api/posts/", "tag=a&t%61g=b"),
            Err(Refusal::Duplicate("tag"))
        );
        assert_eq!(
            Params::parse("/blog/", "page=0002"),
            Err(Refusal::Redirect("/blog/?page=2".into()))
        );
        assert_eq!(
            Params::parse("/blog/tag/rust/", "page=%2B2&x=1"),
            Err(Refusal::Redirect("/blog/tag/rust/?page=2".into()))
        );
        assert_eq!(
            Params::parse("/api/ai-tools/", "featured=1"),
            Err(Refusal::Redirect("/api/ai-tools/?featured=true".into()))
        );
        // Out of bounds: refused, naming the parameter.
        assert!(matches!(
            Params::parse("/blog/", "page=0"),
            Err(Refusal::Invalid("page", _))
        ));
        assert!(matches!(
            Params::parse("/api/ai-tools/", "featured=yes"),
            Err(Refusal::Invalid("featured", _))
        ));
        assert_eq!(Params::parse("/blog/", "page=").unwrap(), Params::default());
    }

    #[test]
    fn paths_are_spelled_one_way() {
        assert_eq!(canonical_path("/blog/x/"), None);
        assert_eq!(
            canonical_path("/%62log/%63ache/").as_deref(),
            Some("/blog/cache/")
        );
        assert_eq!(
            canonical_path("/blog/a%2fb/").as_deref(),
            Some("/blog/a%2Fb/")
        );
        assert_eq!(canonical_path("/blog/a%2Fb/"), None);
        assert_eq!(canonical_path("/blog/%zz/"), None);
        assert_eq!(canonical_path("/blog/%"), None);
    }

    #[test]
    fn dot_segments_never_stay_in_a_canonical_path() {
        for (raw, canonical) in [
            ("/static/%2e%2e/Cargo.toml", Some("/Cargo.toml")),
            ("/static/%2E%2E/%2e%2e/%2e%2e/etc", Some("/etc")),
            ("/blog/./x/", Some("/blog/x/")),
            ("/blog/x/..", Some("/blog/")),
            ("/blog/%2e/", Some("/blog/")),
            ("/blog/..x/", None),
            ("/blog/x.y/", None),
        ] {
            assert_eq!(canonical_path(raw).as_deref(), canonical, "{raw}");
        }
    }
}
