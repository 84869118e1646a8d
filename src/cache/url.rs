//! `CACHE_URL`: which backend, parsed once; never prints a password.

use std::fmt;

/// Which cache `CACHE_URL` names.
#[derive(Clone, PartialEq, Eq)]
pub enum CacheUrl {
    Memory,
    Redis(String),
    /// `redis+cluster://[user:password@]host:port,host:port,…`: the seed nodes, each as a
    /// `redis://` URL carrying the credentials; the client learns the rest of the
    /// cluster from any one of them.
    RedisCluster(Vec<String>),
    None,
}

impl CacheUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw {
            "" | "memory" | "memory://" => Ok(CacheUrl::Memory),
            "none" | "none://" => Ok(CacheUrl::None),
            _ if raw.starts_with("redis://") || raw.starts_with("rediss://") => {
                url::Url::parse(raw).map_err(|e| e.to_string())?;
                Ok(CacheUrl::Redis(raw.to_string()))
            }
            _ if raw.starts_with("redis+cluster://") || raw.starts_with("rediss+cluster://") => {
                parse_cluster(raw).map(CacheUrl::RedisCluster)
            }
            _ => Err(format!(
                "unsupported value '{raw}' (expected memory://, redis://HOST:PORT, \
                 redis+cluster://HOST:PORT,HOST:PORT,… or none)"
            )),
        }
    }

    /// Redis or a Redis Cluster: shared by every instance that names it.
    pub fn is_redis(&self) -> bool {
        matches!(self, CacheUrl::Redis(_) | CacheUrl::RedisCluster(_))
    }
}

fn parse_cluster(raw: &str) -> Result<Vec<String>, String> {
    let (scheme, rest) = raw
        .split_once("+cluster://")
        .expect("checked by the caller");
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (format!("{auth}@"), rest),
        None => (String::new(), rest),
    };
    let hosts = rest.split(['/', '?']).next().unwrap_or("");
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| {
            let node = format!("{scheme}://{auth}{host}");
            url::Url::parse(&node)
                .map_err(|e| format!("cluster node '{host}': {e}"))
                .and_then(|u| match (u.host_str(), u.port()) {
                    (Some(_), Some(_)) => Ok(node),
                    _ => Err(format!("cluster node '{host}' needs a host and a port")),
                })
        })
        .collect::<Result<_, _>>()?;
    if nodes.is_empty() {
        return Err("redis+cluster:// needs at least one HOST:PORT".into());
    }
    Ok(nodes)
}

fn redacted(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "redis://…".into(),
    }
}

impl fmt::Debug for CacheUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheUrl::Memory => f.write_str("memory://"),
            CacheUrl::None => f.write_str("none"),
            CacheUrl::Redis(u) => f.write_str(&redacted(u)),
            CacheUrl::RedisCluster(nodes) => {
                let nodes: Vec<String> = nodes
                    .iter()
                    .map(|n| {
                        let n = redacted(n);
                        let (scheme, rest) = n.split_once("://").unwrap_or(("redis", &n));
                        let rest = rest.trim_end_matches('/');
                        format!("{scheme}+cluster://{rest}")
                    })
                    .collect();
                // One URL, as it was given: the scheme and credentials once.
                let first = nodes.first().cloned().unwrap_or_default();
                let prefix_len = first.rfind(['@', '/']).map_or(0, |i| i + 1);
                let hosts: Vec<&str> = nodes
                    .iter()
                    .map(|n| &n[prefix_len.min(n.len())..])
                    .collect();
                write!(f, "{}{}", &first[..prefix_len], hosts.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_give_one_node_url_each_with_the_credentials() {
        let url = CacheUrl::parse("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001/").unwrap();
        assert_eq!(
            url,
            CacheUrl::RedisCluster(vec![
                "redis://:s3cret@10.0.0.1:7000".into(),
                "redis://:s3cret@10.0.0.2:7001".into()
            ])
        );
        let shown = format!("{url:?}");
        assert_eq!(shown, "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:7001");
        assert!(url.is_redis());
    }

    #[test]
    fn cluster_urls_without_a_port_or_node_are_refused() {
        assert!(CacheUrl::parse("redis+cluster://").is_err());
        assert!(CacheUrl::parse("redis+cluster://10.0.0.1").is_err());
        assert_eq!(
            format!(
                "{:?}",
                CacheUrl::parse("redis+cluster://127.0.0.1:7000").unwrap()
            ),
            "redis+cluster://127.0.0.1:7000"
        );
    }
}
