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

/// A query parameter a route reads: every other one is ignored, and left out of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    /// Refused (400) without it.
    pub required: bool,
    /// Read only with this other parameter: without it the request is redirected (308)
    /// to its URL without this one, so it names one resource, not one per value.
    pub needs: Option<&'static str>,
    /// For the API's description (OpenAPI).
    pub doc: &'static str,
}

impl Param {
    pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Param {
        Param {
            name,
            kind,
            required: false,
            needs: None,
            doc,
        }
    }
    pub const fn required(self) -> Param {
        Param {
            required: true,
            ..self
        }
    }
    pub const fn needs(self, other: &'static str) -> Param {
        Param {
            needs: Some(other),
            ..self
        }
    }
}

/// A parameter's type and bounds. A value out of them is refused with a 400 naming the
/// parameter, before any handler or cache sees it (so it is never stored); bounds that
/// only the content knows (the last page, whether a tag has a visible post) are the
/// handler's, which answers 404 past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page number: an integer from 1 (`02` and `+2` are spellings of 2).
    Page,
    /// A slug: 1 to 100 lowercase letters, digits and hyphens.
    Slug,
    /// `true` or `false` (`1`/`0` and any case are spellings of them).
    Flag,
    /// Free text of 1 to `max_chars` characters.
    Text { max_chars: usize },
    /// A search query (`content::search::SearchQuery`): normalised here; one the parser
    /// refuses is left to the handler, which keeps the reader's text in its answer.
    Search,
    /// One of these values.
    OneOf(&'static [&'static str]),
}

pub const MAX_SLUG: usize = 100;

impl Kind {
    /// Why a required parameter of this kind that is absent is refused.
    pub fn missing(self) -> &'static str {
        match self {
            Kind::Search => "type a word to search for",
            _ => "is required",
        }
    }

    /// The value as it is written canonically, or why it is refused.
    pub fn canonical(self, value: &str) -> Result<String, String> {
        match self {
            Kind::Page => value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.to_string())
                .ok_or_else(|| format!("must be a positive integer, got '{value}'")),
            Kind::Slug if is_slug(value) => Ok(value.to_string()),
            Kind::Slug => Err(format!(
                "must be a slug (lowercase letters, digits, '-'; at most {MAX_SLUG}), got '{value}'"
            )),
            Kind::Flag => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok("true".into()),
                "false" | "0" => Ok("false".into()),
                _ => Err(format!("must be true or false, got '{value}'")),
            },
            Kind::Text { max_chars } if value.chars().count() <= max_chars => Ok(value.to_string()),
            Kind::Text { max_chars } => Err(format!("must be at most {max_chars} characters")),
            Kind::Search => Ok(crate::content::search::SearchQuery::parse(value)
                .map(|q| q.canonical().to_string())
                .unwrap_or_else(|_| value.to_string())),
            Kind::OneOf(values) if values.contains(&value) => Ok(value.to_string()),
            Kind::OneOf(values) => Err(format!("'{value}' is not one of {}", values.join(", "))),
        }
    }
}

fn is_slug(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_SLUG
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

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

    /// The request's parameters as `check` parsed them; None if `check` did not run
    /// on it.
    pub fn of(req: &HttpRequest) -> Option<Params> {
        req.extensions().get::<Params>().cloned()
    }

    /// Parses the query string of a request for `path`, whose route reads `read`.
    pub fn parse(read: &[Param], path: &str, query: &str) -> Result<Params, Refusal> {
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

/// The parameters each path's route reads (`web::routes::params_of`).
pub type ParamsOf = fn(&str) -> &'static [Param];

/// The middleware (see `web::app`): redirects non-canonical spellings, refuses
/// duplicated and out-of-bounds parameters, and leaves the parsed `Params` for
/// everything inside.
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    params_of: ParamsOf,
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
        None => match Params::parse(params_of(req.path()), req.path(), req.query_string()) {
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

    /// A handler reached without `check` (a misbuilt app) fails loudly rather than
    /// reading no parameter.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Params::of(req).ok_or_else(|| {
            actix_web::error::ErrorInternalServerError("the canonical request layer did not run")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
