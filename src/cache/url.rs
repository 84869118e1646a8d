//! `CACHE_URL`: which backend, parsed once; never prints a password.

use std::fmt;

/// Which cache `CACHE_URL` names.
#[derive(Clone, PartialEq, Eq)]
pub enum CacheUrl {
    Memory,
    Redis(String),
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
            _ => Err(format!(
                "unsupported value '{raw}' (expected memory://, redis://HOST:PORT or none)"
            )),
        }
    }
}

impl fmt::Debug for CacheUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheUrl::Memory => f.write_str("memory://"),
            CacheUrl::None => f.write_str("none"),
            CacheUrl::Redis(u) => match url::Url::parse(u) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    write!(f, "{url}")
                }
                Err(_) => f.write_str("redis://…"),
            },
        }
    }
}
