//! `EDGE_*`, `FASTLY_*`, `CLOUDFLARE_*`, `AWS_*`: the edge caches in front of the site
//! and their credentials (what is done with them is `crate::edge`'s).

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
    /// `nginx://host:port`: nginx's `proxy_cache` with `ngx_cache_purge`, purged by path
    /// (`PURGE /path`, the shipped `deploy/nginx/folio-cache.conf`).
    Nginx { host_port: String },
    /// `cloudfront://DISTRIBUTION_ID`: Amazon CloudFront, purged by path
    /// (`CreateInvalidation`, signed with AWS Signature Version 4).
    CloudFront { distribution: String },
}

impl EdgeUrl {
    pub fn parse(raw: &str) -> Result<EdgeUrl, String> {
        let raw = raw.trim();
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| format!("{raw:?}: expected varnish://host:port, nginx://host:port, fastly://SERVICE_ID, cloudflare://ZONE_ID or cloudfront://DISTRIBUTION_ID"))?;
        let rest = rest.trim_end_matches('/');
        let id_ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        match scheme {
            "varnish" | "nginx" => {
                let url = url::Url::parse(&format!("http://{rest}"))
                    .map_err(|e| format!("{raw:?}: {e}"))?;
                // `url` hides an explicit default port (80): it must still be written.
                let port = url.port().or_else(|| rest.ends_with(":80").then_some(80));
                match (url.host_str(), port, url.path()) {
                    (Some(host), Some(port), "/") => {
                        let host_port = format!("{host}:{port}");
                        Ok(match scheme {
                            "varnish" => EdgeUrl::Varnish { host_port },
                            _ => EdgeUrl::Nginx { host_port },
                        })
                    }
                    _ => Err(format!("{raw:?}: expected {scheme}://host:port")),
                }
            }
            "fastly" if id_ok => Ok(EdgeUrl::Fastly {
                service: rest.to_string(),
            }),
            "cloudflare" if id_ok => Ok(EdgeUrl::Cloudflare {
                zone: rest.to_string(),
            }),
            "cloudfront" if id_ok => Ok(EdgeUrl::CloudFront {
                distribution: rest.to_string(),
            }),
            "fastly" | "cloudflare" | "cloudfront" => {
                Err(format!("{raw:?}: the id is letters, digits, - and _"))
            }
            _ => Err(format!(
                "{raw:?}: unknown edge {scheme:?} (varnish, nginx, fastly, cloudflare or cloudfront)"
            )),
        }
    }

    /// How rows and statistics name it: the URL, canonical (it holds no secret).
    pub fn name(&self) -> String {
        match self {
            EdgeUrl::Varnish { host_port } => format!("varnish://{host_port}"),
            EdgeUrl::Fastly { service } => format!("fastly://{service}"),
            EdgeUrl::Cloudflare { zone } => format!("cloudflare://{zone}"),
            EdgeUrl::Nginx { host_port } => format!("nginx://{host_port}"),
            EdgeUrl::CloudFront { distribution } => format!("cloudfront://{distribution}"),
        }
    }

    /// Whether it is purged by path (it reads no tag header).
    pub fn by_path(&self) -> bool {
        matches!(self, EdgeUrl::Nginx { .. } | EdgeUrl::CloudFront { .. })
    }
}

/// AWS credentials for CloudFront, from the usual variables.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretKey>,
    /// Temporary credentials (an assumed role) come with one.
    pub session_token: Option<SecretKey>,
    /// CloudFront's API (`AWS_ENDPOINT_URL_CLOUDFRONT`, or `AWS_ENDPOINT_URL`).
    pub cloudfront_api: String,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            cloudfront_api: "https://cloudfront.amazonaws.com".into(),
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
    pub aws: AwsConfig,
    /// Paths recorded for the path edges (nginx, CloudFront) at most; past it, a new
    /// path is not for them (`s-maxage=0`), since it could not be purged.
    pub path_budget: u64,
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
        if has(|e| matches!(e, EdgeUrl::CloudFront { .. })) {
            if self.aws.access_key_id.is_none() || self.aws.secret_access_key.is_none() {
                return Err((
                    "AWS_ACCESS_KEY_ID",
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set with a cloudfront:// edge".into(),
                ));
            }
            check_tls("AWS_ENDPOINT_URL_CLOUDFRONT", &self.aws.cloudfront_api)?;
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
