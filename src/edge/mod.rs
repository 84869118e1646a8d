//! Edge caches in front of the site — Varnish (xkey), Fastly (`Surrogate-Key`),
//! Cloudflare (`Cache-Tag`) by tag, nginx (`ngx_cache_purge`) and CloudFront
//! (`CreateInvalidation`) by path — kept coherent with the data by the same tags the
//! response cache traces.
//!
//! Two halves. **Headers** (`EdgeHeaders`): every stored page or API answer names, in
//! each configured edge's tag header, the tags it was built from, and gets an edge
//! lifetime apart from the browser's; an answer whose tags are not known (not stored
//! here) gets none, so an edge never keeps what it could not purge. **Purges**
//! (`delivery`): once a write's invalidation has reached the site's own cache, its tags
//! are owed to every edge as rows in `edge_purges`, written in the transaction that
//! retires the outbox row — a purge is never lost to a crash or to an edge that is down —
//! and delivered, coalesced, retried with backoff, then repeated once after
//! `EDGE_PURGE_REPEAT_AFTER` (a fill that left the site before the write and reached the
//! edge after the first purge is dropped by the second).
//!
//! The path edges read no tags: a stored answer sent to them is first recorded
//! (`paths`: its URL under each of its tags, in the database, for longer than any edge
//! may keep it), and their purge of a write's tags is the URLs recorded under them.

pub mod delivery;
pub mod paths;
mod purge;
mod sigv4;

use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

pub use self::delivery::{EdgeStats, Edges};
pub use crate::config::edge::{EdgeConfig, EdgeUrl};

/// The tag header an edge reads; none for the edges purged by path.
fn header_of(edge: &EdgeUrl) -> Option<TagHeader> {
    match edge {
        EdgeUrl::Varnish { .. } => Some(TagHeader::XKEY),
        EdgeUrl::Fastly { .. } => Some(TagHeader::SURROGATE_KEY),
        EdgeUrl::Cloudflare { .. } => Some(TagHeader::CACHE_TAG),
        EdgeUrl::Nginx { .. } | EdgeUrl::CloudFront { .. } => None,
    }
}

/// A tag header an edge reads, and how much of it the edge takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TagHeader {
    name: &'static str,
    separator: &'static str,
    /// Bytes of value past which the tags are sent hashed (`edge_token_hashed`).
    limit: usize,
}

impl TagHeader {
    /// Varnish keeps response headers within `http_resp_hdr_len` (8 KiB by default),
    /// for all of them together: half for the keys.
    const XKEY: TagHeader = TagHeader {
        name: "xkey",
        separator: " ",
        limit: 4096,
    };
    /// Fastly: 16,384 bytes.
    const SURROGATE_KEY: TagHeader = TagHeader {
        name: "surrogate-key",
        separator: " ",
        limit: 16_384,
    };
    /// Cloudflare: 16 KB of tags in all.
    const CACHE_TAG: TagHeader = TagHeader {
        name: "cache-tag",
        separator: ",",
        limit: 16_000,
    };
}

/// The name an edge knows a tag by: its tag key (`{prefix}:tag:{escaped name}`, see
/// `cache::KeyMaker::tag_key`) — printable, without spaces or commas, and distinct per
/// site, so several sites can share one edge.
pub fn edge_token(tag_key: &str) -> &str {
    tag_key
}

/// The short form, used when a page's list would pass an edge's limit. Purges always
/// name both forms: which one a stored page carries depends on that page's list.
pub fn edge_token_hashed(tag_key: &str) -> String {
    let digest = Sha256::digest(tag_key.as_bytes());
    let prefix = tag_key.split(':').next().unwrap_or("");
    format!("{prefix}:h:{}", hex::encode(&digest[..8]))
}

/// What the response cache adds for the edges: the tag headers, and the edge's lifetime
/// (`Cache-Control: s-maxage`, `Surrogate-Control` for Varnish and Fastly,
/// `CDN-Cache-Control` for Cloudflare), apart from the browser's.
#[derive(Debug)]
pub struct EdgeHeaders {
    headers: Vec<TagHeader>,
    /// The edge lifetime, in seconds.
    ttl: u64,
    /// `, s-maxage=N` or `, s-maxage=0` appended to a policy's browser `Cache-Control`.
    s_maxage: String,
    surrogate_control: HeaderValue,
    /// `, stale-while-revalidate=…, stale-if-error=…` after `max-age` in the above.
    stale: String,
    /// Those two, in seconds together: how long past `ttl` an edge may still serve it.
    grace: u64,
}

impl EdgeHeaders {
    /// None without edges: nothing is added, and no tag header reaches a browser.
    pub fn new(config: &EdgeConfig) -> Option<Arc<EdgeHeaders>> {
        if config.edges.is_empty() {
            return None;
        }
        let mut headers: Vec<TagHeader> = config.edges.iter().filter_map(header_of).collect();
        headers.dedup();
        let stale = format!(
            ", stale-while-revalidate={}, stale-if-error={}",
            config.stale_while_revalidate.as_secs(),
            config.stale_if_error.as_secs()
        );
        let grace = (config.stale_while_revalidate + config.stale_if_error).as_secs();
        Some(Arc::new(EdgeHeaders::with_ttl(
            headers,
            config.ttl.as_secs(),
            stale,
            grace,
        )))
    }

    fn with_ttl(headers: Vec<TagHeader>, ttl: u64, stale: String, grace: u64) -> EdgeHeaders {
        EdgeHeaders {
            headers,
            ttl,
            s_maxage: format!(", s-maxage={ttl}"),
            surrogate_control: HeaderValue::from_str(&format!("max-age={ttl}{stale}"))
                .expect("digits"),
            stale,
            grace,
        }
    }

    /// The longest an edge may keep, and serve, an answer it was sent.
    pub fn kept_at_most(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ttl + self.grace)
    }

    /// The same headers with an edge lifetime of at most `seconds` (a route's own, see
    /// `web::routes::Edge`).
    pub fn at_most(self: &Arc<Self>, seconds: u64) -> Arc<EdgeHeaders> {
        match seconds < self.ttl {
            true => Arc::new(EdgeHeaders::with_ttl(
                self.headers.clone(),
                seconds,
                self.stale.clone(),
                self.grace,
            )),
            false => self.clone(),
        }
    }

    /// The `Cache-Control` of a page the edges may keep (`browser`: what browsers get).
    pub fn cache_control(&self, browser: &HeaderValue) -> HeaderValue {
        let browser = browser.to_str().unwrap_or("no-cache");
        // Browsers revalidate every time (ETag, 304), the edge keeps it; `no-cache`
        // would bind the edge too.
        let browser = if browser == "no-cache" {
            "public, max-age=0"
        } else {
            browser
        };
        HeaderValue::from_str(&format!("{browser}{}", self.s_maxage)).expect("ascii")
    }

    /// The `Cache-Control` of an answer the edges must not keep (its tags are unknown).
    pub fn untagged_cache_control(browser: &HeaderValue) -> HeaderValue {
        let browser = browser.to_str().unwrap_or("no-cache");
        HeaderValue::from_str(&format!("{browser}, s-maxage=0")).expect("ascii")
    }

    /// The headers of a page built from `tag_keys` (sorted, distinct); None when even
    /// hashed they would pass an edge's limit (the page is then not for the edges).
    /// With only path edges, none: they keep what `Cache-Control` allows.
    pub fn for_tags<'a>(
        &self,
        tag_keys: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let mut out = Vec::with_capacity(self.headers.len() + 2);
        for header in &self.headers {
            let plain: Vec<&str> = tag_keys.clone().map(edge_token).collect();
            let length: usize = plain.iter().map(|t| t.len() + 1).sum();
            let value = if length <= header.limit {
                plain.join(header.separator)
            } else {
                let hashed: Vec<String> = tag_keys.clone().map(edge_token_hashed).collect();
                hashed.join(header.separator)
            };
            if value.is_empty() || value.len() > header.limit {
                return None;
            }
            out.push((
                HeaderName::from_static(header.name),
                HeaderValue::from_str(&value).ok()?,
            ));
        }
        if self.headers.is_empty() {
            return Some(out);
        }
        out.push((
            HeaderName::from_static("surrogate-control"),
            self.surrogate_control.clone(),
        ));
        out.push((
            HeaderName::from_static("cdn-cache-control"),
            self.surrogate_control.clone(),
        ));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn edge_urls_parse_to_one_canonical_name() {
        for (raw, name) in [
            ("varnish://127.0.0.1:6081", "varnish://127.0.0.1:6081"),
            ("varnish://Cache.Example:80/", "varnish://cache.example:80"),
            (
                "fastly://SU1Z0isxPaozGVKXdv0eY",
                "fastly://SU1Z0isxPaozGVKXdv0eY",
            ),
            (
                " cloudflare://023e105f4ecef8ad9ca31a8372d0c353 ",
                "cloudflare://023e105f4ecef8ad9ca31a8372d0c353",
            ),
            ("nginx://127.0.0.1:8080/", "nginx://127.0.0.1:8080"),
            ("cloudfront://E2QWRUHAPOMQZL", "cloudfront://E2QWRUHAPOMQZL"),
        ] {
            assert_eq!(EdgeUrl::parse(raw).map(|e| e.name()), Ok(name.to_string()));
        }
        for bad in [
            "varnish://host",
            "varnish://host:80/path",
            "fastly://",
            "fastly://a/b",
            "cloudflare://z?x=1",
            "akamai://x",
            "nginx://host",
            "cloudfront://E2/x",
            "127.0.0.1:6081",
        ] {
            assert!(EdgeUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn long_tag_lists_are_hashed_under_the_limit() {
        let config = EdgeConfig {
            edges: vec![EdgeUrl::parse("varnish://127.0.0.1:1").unwrap()],
            ttl: Duration::from_secs(60),
            ..Default::default()
        };
        let headers = EdgeHeaders::new(&config).unwrap();
        let few = ["folio:tag:post_lists", "folio:tag:post%3Aa"];
        let out = headers.for_tags(few.iter().copied()).unwrap();
        assert_eq!(out[0].1, "folio:tag:post_lists folio:tag:post%3Aa");
        let many: Vec<String> = (0..150)
            .map(|i| format!("folio:tag:post%3Aa-longer-slug-{i:04}"))
            .collect();
        let out = headers.for_tags(many.iter().map(String::as_str)).unwrap();
        let value = out[0].1.to_str().unwrap();
        assert!(value.len() <= 4096, "{}", value.len());
        assert_eq!(value.split(' ').count(), 150);
        assert!(value.split(' ').all(|t| t.starts_with("folio:h:")));
        assert_eq!(
            value.split(' ').next().unwrap(),
            edge_token_hashed("folio:tag:post%3Aa-longer-slug-0000")
        );
        // Past the limit even hashed: no tag header, so the edges must not keep it.
        let too_many: Vec<String> = (0..400).map(|i| format!("folio:tag:post%3A{i}")).collect();
        assert!(headers
            .for_tags(too_many.iter().map(String::as_str))
            .is_none());
    }
}
