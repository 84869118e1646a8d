//! One purge request per edge kind, as each documents it:
//!
//! - Varnish (the shipped `deploy/varnish/default.vcl`): `PURGE /` with the keys in
//!   `xkey-purge` (space-separated) and the shared secret in `X-Purge-Secret`.
//! - Fastly: `POST /service/{id}/purge` with up to 256 keys in `Surrogate-Key` and the
//!   token in `Fastly-Key` (purge by surrogate key, batched).
//! - Cloudflare: `POST /zones/{zone}/purge_cache` with `{"tags": […]}` (up to 100 per
//!   request) and `Authorization: Bearer`; 429 carries `Retry-After`.
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

/// Sends purges; holds the HTTP client and credentials.
pub(super) struct Purger {
    client: reqwest::Client,
    config: EdgeConfig,
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
        Purger { client, config }
    }

    /// Purges `tokens` from `edge`, in as many requests as its limits need; returns how
    /// many requests were sent.
    pub(super) async fn purge(&self, edge: &EdgeUrl, tokens: &[String]) -> Result<usize, Refused> {
        let span = tracing::debug_span!("edge.purge", edge = ?edge, tags = tokens.len());
        self.send(edge, tokens).instrument(span).await
    }

    async fn send(&self, edge: &EdgeUrl, tokens: &[String]) -> Result<usize, Refused> {
        let mut requests = 0;
        match edge {
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
        Ok(requests)
    }
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
