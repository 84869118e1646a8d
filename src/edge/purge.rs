//! One purge request per edge kind, as each documents it:
//!
//! - Varnish (the shipped `deploy/varnish/default.vcl`): `PURGE /` with the keys in
//!   `xkey-purge` (space-separated) and the shared secret in `X-Purge-Secret`.
//! - Fastly: `POST /service/{id}/purge` with up to 256 keys in `Surrogate-Key` and the
//!   token in `Fastly-Key` (purge by surrogate key, batched).
//! - Cloudflare: `POST /zones/{zone}/purge_cache` with `{"tags": […]}` (up to 100 per
//!   request) and `Authorization: Bearer`; 429 carries `Retry-After`.
//! - nginx with `ngx_cache_purge` (the shipped `deploy/nginx/folio-cache.conf`): one
//!   `PURGE /_purge/path?query` per path; 200 (purged) or 404 (not held) acknowledge
//!   it. No secret: the purge location takes the app's addresses only.
//! - CloudFront: `POST /2020-05-31/distribution/{id}/invalidation` with an
//!   `InvalidationBatch` of paths (coalesced, see `paths::invalidation_paths`), signed
//!   with AWS Signature Version 4. One invalidation at a time per distribution: while
//!   the last one this process sent is `InProgress`, the next waits.
//!
//! An edge acknowledges with a 2xx (Cloudflare: and `"success": true`); anything else
//! is a failure the caller retries.

use std::time::Duration;
use tracing::Instrument as _;

use super::{EdgeConfig, EdgeUrl};

/// Varnish's request headers are kept within `http_req_hdr_len` (8 KiB by default).
const VARNISH_HEADER_BYTES: usize = 6000;
const FASTLY_KEYS_PER_REQUEST: usize = 256;
const CLOUDFLARE_TAGS_PER_REQUEST: usize = 100;
/// nginx purges sent at once.
const NGINX_CONCURRENT: usize = 16;
/// Paths per CloudFront invalidation: each path past the month's first 1,000 is billed,
/// so past this the paths are merged into wildcards (`paths::invalidation_paths`).
pub(super) const CLOUDFRONT_PATHS: usize = 100;
/// How long to wait before asking again whether an invalidation is done.
const CLOUDFRONT_IN_PROGRESS_WAIT: Duration = Duration::from_secs(10);

/// Why a purge was not acknowledged, and when the edge asked to be tried again.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) reason: String,
    pub(super) retry_after: Option<Duration>,
}

impl Refused {
    fn new(reason: impl Into<String>) -> Self {
        Refused {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// What an edge acknowledged: requests sent, and paths (or tags) they named.
#[derive(Debug, Default)]
pub(super) struct Sent {
    pub(super) requests: usize,
    pub(super) items: usize,
}

/// Sends purges; holds the HTTP client and credentials.
pub(super) struct Purger {
    client: reqwest::Client,
    config: EdgeConfig,
    /// Per CloudFront distribution: the invalidation last sent, while it may still run.
    in_progress: parking_lot::Mutex<std::collections::HashMap<String, String>>,
}

impl Purger {
    pub(super) fn new(config: EdgeConfig) -> Purger {
        // No redirect is followed: a purge carries a secret (`X-Purge-Secret`,
        // `Fastly-Key`, a Cloudflare token) meant for the configured host only. A 3xx is
        // a failed purge, retried like any other.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client without TLS settings builds");
        Purger {
            client,
            config,
            in_progress: Default::default(),
        }
    }

    /// Purges `items` from `edge` — tags for the tag edges, paths for nginx and
    /// CloudFront — in as many requests as its limits need.
    pub(super) async fn purge(&self, edge: &EdgeUrl, items: &[String]) -> Result<Sent, Refused> {
        let span = tracing::debug_span!(
            "edge.purge",
            edge = ?edge,
            tags = tracing::field::Empty,
            paths = tracing::field::Empty,
        );
        match edge.by_path() {
            true => span.record("paths", items.len()),
            false => span.record("tags", items.len()),
        };
        self.send(edge, items).instrument(span).await
    }

    async fn send(&self, edge: &EdgeUrl, tokens: &[String]) -> Result<Sent, Refused> {
        let mut requests = 0;
        match edge {
            EdgeUrl::Nginx { host_port } => {
                for chunk in tokens.chunks(NGINX_CONCURRENT) {
                    let sent = chunk.iter().map(|path| {
                        let req = self.client.request(
                            reqwest::Method::from_bytes(b"PURGE").expect("a token"),
                            format!("http://{host_port}/_purge{path}"),
                        );
                        async move {
                            let res = traced(req)
                                .send()
                                .await
                                .map_err(|e| Refused::new(format!("not sent: {e}")))?;
                            match res.status().as_u16() {
                                // Purged, or not held: either way nginx no longer has it.
                                200 => Ok(()),
                                // Not held — unless the site itself answered: nginx
                                // has no purge location and passed it on.
                                404 if !res.headers().contains_key("x-request-id") => Ok(()),
                                404 => Err(Refused::new(
                                    "nginx passed the purge to the site: no /_purge/ location (deploy/nginx/folio-cache.conf)",
                                )),
                                _ => check(Ok(res)).await.map(|_| ()),
                            }
                        }
                    });
                    for result in futures_util::future::join_all(sent).await {
                        result?;
                    }
                    requests += chunk.len();
                }
                return Ok(Sent {
                    requests,
                    items: tokens.len(),
                });
            }
            EdgeUrl::CloudFront { distribution } => {
                let items = super::paths::invalidation_paths(tokens, CLOUDFRONT_PATHS);
                self.invalidate(distribution, &items).await?;
                return Ok(Sent {
                    requests: 1,
                    items: items.len(),
                });
            }
            EdgeUrl::Varnish { host_port } => {
                let secret = self.config.purge_secret.as_ref().map(|s| s.expose());
                for chunk in chunks_by_bytes(tokens, VARNISH_HEADER_BYTES) {
                    let req = self
                        .client
                        .request(
                            reqwest::Method::from_bytes(b"PURGE").expect("a token"),
                            format!("http://{host_port}/"),
                        )
                        .header("xkey-purge", chunk.join(" "))
                        .header("x-purge-secret", secret.unwrap_or(""));
                    check(traced(req).send().await).await?;
                    requests += 1;
                }
            }
            EdgeUrl::Fastly { service } => {
                let token = self.config.fastly_token.as_ref().map(|s| s.expose());
                let api = self.config.fastly_api.trim_end_matches('/');
                for chunk in tokens.chunks(FASTLY_KEYS_PER_REQUEST) {
                    let req = self
                        .client
                        .post(format!("{api}/service/{service}/purge"))
                        .header("fastly-key", token.unwrap_or(""))
                        .header("surrogate-key", chunk.join(" "))
                        .header("accept", "application/json");
                    check(traced(req).send().await).await?;
                    requests += 1;
                }
            }
            EdgeUrl::Cloudflare { zone } => {
                let token = self.config.cloudflare_token.as_ref().map(|s| s.expose());
                let api = self.config.cloudflare_api.trim_end_matches('/');
                for chunk in tokens.chunks(CLOUDFLARE_TAGS_PER_REQUEST) {
                    let req = self
                        .client
                        .post(format!("{api}/zones/{zone}/purge_cache"))
                        .bearer_auth(token.unwrap_or(""))
                        .json(&serde_json::json!({ "tags": chunk }));
                    let body = check(traced(req).send().await).await?;
                    let ok = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("success").and_then(|s| s.as_bool()));
                    if ok != Some(true) {
                        return Err(Refused::new(format!(
                            "Cloudflare answered without success: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )));
                    }
                    requests += 1;
                }
            }
        }
        Ok(Sent {
            requests,
            items: tokens.len(),
        })
    }

    /// One CloudFront invalidation of `paths`, once the last one this process sent to
    /// the distribution is done.
    async fn invalidate(&self, distribution: &str, paths: &[String]) -> Result<(), Refused> {
        let last = self.in_progress.lock().get(distribution).cloned();
        if let Some(id) = last {
            let path = format!("/2020-05-31/distribution/{distribution}/invalidation/{id}");
            let req = self.signed(reqwest::Method::GET, &path, None)?;
            match check(traced(req).send().await).await {
                Ok(body) if xml_text(&body, "Status").as_deref() == Some("InProgress") => {
                    return Err(Refused {
                        reason: format!("invalidation {id} is still in progress"),
                        retry_after: Some(CLOUDFRONT_IN_PROGRESS_WAIT),
                    });
                }
                // Done, or not known any more: CloudFront refuses a batch past its limits.
                _ => {
                    self.in_progress.lock().remove(distribution);
                }
            }
        }
        let mut body = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">",
        );
        body.push_str(&format!(
            "<Paths><Quantity>{}</Quantity><Items>",
            paths.len()
        ));
        for p in paths {
            body.push_str(&format!("<Path>{}</Path>", xml_escape(p)));
        }
        // Unique per batch: CloudFront takes a repeated reference for the same batch.
        body.push_str(&format!(
            "</Items></Paths><CallerReference>folio-{}</CallerReference></InvalidationBatch>",
            hex::encode(rand::random::<[u8; 12]>())
        ));
        let path = format!("/2020-05-31/distribution/{distribution}/invalidation");
        let req = self.signed(reqwest::Method::POST, &path, Some(body.into_bytes()))?;
        let answer = check(traced(req).send().await).await?;
        if xml_text(&answer, "Status").as_deref() == Some("InProgress") {
            if let Some(id) = xml_text(&answer, "Id") {
                self.in_progress.lock().insert(distribution.to_string(), id);
            }
        }
        Ok(())
    }

    /// A request to CloudFront's API, signed (`sigv4`); `body` is XML.
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::RequestBuilder, Refused> {
        let aws = &self.config.aws;
        let api = aws.cloudfront_api.trim_end_matches('/');
        let url = url::Url::parse(&format!("{api}{path}"))
            .map_err(|e| Refused::new(format!("{api}: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(Refused::new(format!("{api}: no host"))),
        };
        let credentials = super::sigv4::Credentials {
            access_key_id: aws.access_key_id.as_deref().unwrap_or(""),
            secret_access_key: aws
                .secret_access_key
                .as_ref()
                .map(|s| s.expose())
                .unwrap_or(""),
            session_token: aws.session_token.as_ref().map(|s| s.expose()),
            // CloudFront is global: its API is signed for us-east-1 whatever AWS_REGION says.
            region: "us-east-1",
            service: "cloudfront",
        };
        let body = body.unwrap_or_default();
        let mut headers = vec![("host", host.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "text/xml"));
        }
        let signed = super::sigv4::sign(
            &credentials,
            method.as_str(),
            url.path(),
            &headers,
            &body,
            chrono::Utc::now(),
        );
        let mut req = self.client.request(method, url);
        for (name, value) in headers.iter().filter(|(n, _)| *n != "host") {
            req = req.header(*name, *value);
        }
        for (name, value) in signed {
            req = req.header(name, value);
        }
        Ok(req.body(body))
    }
}

/// The text of the first `<name>` element of an XML answer.
fn xml_text(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].trim().to_string())
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A 2xx's body, or why not.
async fn check(sent: reqwest::Result<reqwest::Response>) -> Result<bytes::Bytes, Refused> {
    let res = sent.map_err(|e| Refused::new(format!("not sent: {e}")))?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = res.bytes().await.unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    Err(Refused {
        reason: format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
        ),
        retry_after,
    })
}

/// Consecutive runs of `tokens` whose space-joined length stays within `bytes`.
fn chunks_by_bytes(tokens: &[String], bytes: usize) -> Vec<&[String]> {
    let mut chunks = Vec::new();
    let (mut start, mut length) = (0, 0);
    for (i, token) in tokens.iter().enumerate() {
        if i > start && length + token.len() + 1 > bytes {
            chunks.push(&tokens[start..i]);
            (start, length) = (i, 0);
        }
        length += token.len() + 1;
    }
    if start < tokens.len() {
        chunks.push(&tokens[start..]);
    }
    chunks
}

/// The request, carrying the running span's `traceparent` while spans are exported.
fn traced(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    crate::telemetry::inject_context(&mut headers);
    req.headers(headers)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_stay_within_the_header_limit_and_keep_every_token() {
        let tokens: Vec<String> = (0..500).map(|i| format!("folio:tag:post%3A{i}")).collect();
        let chunks = super::chunks_by_bytes(&tokens, 1000);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.join(" ").len() <= 1000));
        assert_eq!(chunks.concat(), tokens);
        assert!(super::chunks_by_bytes(&[], 10).is_empty());
    }
}
