//! `EDGE_*`, `FASTLY_*`, `CLOUDFLARE_*`: the edge caches in front of the site and their
//! credentials (what is done with them is `crate::edge`'s).

use std::time::Duration;

use super::SecretKey;

/// One edge in `EDGE_CACHE_URLS`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeUrl {
    /// `varnish://host:port`: purged with `PURGE /` and `xkey-purge` (the shipped VCL).
    Varnish { host_port: String },
    /// `fastly://SERVICE_ID`: Fastly's purge-by-surrogate-key API.
    Fastly { service: String },
    /// `cloudflare://ZONE_ID`: Cloudflare's purge-by-cache-tag API.
    Cloudflare { zone: String },
}

impl EdgeUrl {
    pub fn parse(raw: &str) -> Result<EdgeUrl, String> {
        let raw = raw.trim();
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| format!("{raw:?}: expected varnish://host:port, fastly://SERVICE_ID or cloudflare://ZONE_ID"))?;
        let rest = rest.trim_end_matches('/');
        let id_ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        match scheme {
            "varnish" => {
                let url = url::Url::parse(&format!("http://{rest}"))
                    .map_err(|e| format!("{raw:?}: {e}"))?;
                // `url` hides an explicit default port (80): it must still be written.
                let port = url.port().or_else(|| rest.ends_with(":80").then_some(80));
                match (url.host_str(), port, url.path()) {
                    (Some(host), Some(port), "/") => Ok(EdgeUrl::Varnish {
                        host_port: format!("{host}:{port}"),
                    }),
                    _ => Err(format!("{raw:?}: expected varnish://host:port")),
                }
            }
            "fastly" if id_ok => Ok(EdgeUrl::Fastly {
                service: rest.to_string(),
            }),
            "cloudflare" if id_ok => Ok(EdgeUrl::Cloudflare {
                zone: rest.to_string(),
            }),
            "fastly" | "cloudflare" => Err(format!("{raw:?}: the id is letters, digits, - and _")),
            _ => Err(format!(
                "{raw:?}: unknown edge {scheme:?} (varnish, fastly or cloudflare)"
            )),
        }
    }

    /// How rows and statistics name it: the URL, canonical (it holds no secret).
    pub fn name(&self) -> String {
        match self {
            EdgeUrl::Varnish { host_port } => format!("varnish://{host_port}"),
            EdgeUrl::Fastly { service } => format!("fastly://{service}"),
            EdgeUrl::Cloudflare { zone } => format!("cloudflare://{zone}"),
        }
    }
}

/// `EDGE_*`, `FASTLY_*`, `CLOUDFLARE_*`: which edges, their credentials, lifetimes.
#[derive(Clone, Debug, Default)]
pub struct EdgeConfig {
    pub edges: Vec<EdgeUrl>,
    /// Sent as `X-Purge-Secret` to Varnish; the shipped VCL checks it.
    pub purge_secret: Option<SecretKey>,
    pub fastly_token: Option<SecretKey>,
    pub fastly_api: String,
    pub cloudflare_token: Option<SecretKey>,
    pub cloudflare_api: String,
    /// How long an edge keeps a page (`s-maxage`); purges end it sooner.
    pub ttl: Duration,
    /// How long an edge may serve a page stale while it fetches a new one.
    pub stale_while_revalidate: Duration,
    /// How long an edge may serve a page stale while the site fails.
    pub stale_if_error: Duration,
    /// When the second purge of a write's tags is sent.
    pub repeat_after: Duration,
    /// The longest wait between two attempts at a refused purge.
    pub retry_max: Duration,
    /// How long a write waits for the edges' first acknowledgement before it returns.
    pub write_wait: Duration,
}

impl EdgeConfig {
    /// What must be set for the edges listed; an https API needs a build with TLS.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let has = |f: fn(&EdgeUrl) -> bool| self.edges.iter().any(f);
        if has(|e| matches!(e, EdgeUrl::Varnish { .. })) && self.purge_secret.is_none() {
            return Err((
                "EDGE_PURGE_SECRET",
                "must be set with a varnish:// edge (the VCL accepts purges carrying it)".into(),
            ));
        }
        if has(|e| matches!(e, EdgeUrl::Fastly { .. })) {
            if self.fastly_token.is_none() {
                return Err((
                    "FASTLY_API_TOKEN",
                    "must be set with a fastly:// edge".into(),
                ));
            }
            check_tls("FASTLY_API_URL", &self.fastly_api)?;
        }
        if has(|e| matches!(e, EdgeUrl::Cloudflare { .. })) {
            if self.cloudflare_token.is_none() {
                return Err((
                    "CLOUDFLARE_API_TOKEN",
                    "must be set with a cloudflare:// edge".into(),
                ));
            }
            check_tls("CLOUDFLARE_API_URL", &self.cloudflare_api)?;
        }
        Ok(())
    }
}

fn check_tls(var: &'static str, api: &str) -> Result<(), (&'static str, String)> {
    if api.starts_with("https://") && !cfg!(feature = "tls") {
        return Err((
            var,
            format!("{api} needs TLS: build with `--features tls` (`cargo make release` does)"),
        ));
    }
    Ok(())
}
