//! Cache keys: `{prefix}:{version}:{family}:{part}:{part}…`, as Django's `make_key`.
//! Parts are percent-escaped so user input (a slug, a query string) can neither
//! contain a glob character nor a `:` that would let it match another family's
//! pattern; keys over `MAX_KEY_LEN` are hashed, keeping the family so pattern
//! deletion by family still works.

use std::fmt::Write;

use sha2::{Digest, Sha256};

pub const MAX_KEY_LEN: usize = 200;

/// A fully built cache key and the family it belongs to (for statistics and TTLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    family: &'static str,
    full: String,
}

impl Key {
    pub fn family(&self) -> &'static str {
        self.family
    }
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// Applies the site prefix and key version in one place.
#[derive(Debug, Clone)]
pub struct KeyMaker {
    prefix: String,
    version: u32,
}

impl KeyMaker {
    pub fn new(prefix: &str, version: u32) -> Self {
        KeyMaker {
            prefix: prefix.to_string(),
            version,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `family` is a fixed name from the code; `parts` may come from users.
    pub fn key<I, S>(&self, family: &'static str, parts: I) -> Key
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut full = format!("{}:{}:{}", self.prefix, self.version, family);
        for part in parts {
            full.push(':');
            escape_into(&mut full, part.as_ref());
        }
        if full.len() > MAX_KEY_LEN {
            let digest = Sha256::digest(full.as_bytes());
            full = format!(
                "{}:{}:{}:#{}",
                self.prefix,
                self.version,
                family,
                hex::encode(&digest[..16])
            );
        }
        Key { family, full }
    }

    /// The key under which a tag's current version is kept.
    pub fn tag_key(&self, tag: &str) -> String {
        let mut full = format!("{}:{}:tag:", self.prefix, self.version);
        escape_into(&mut full, tag);
        full
    }

    /// A glob over this site's keys: `pattern` is matched against what follows
    /// `{prefix}:{version}:`, e.g. `posts:*` or `blog_*`.
    pub fn pattern(&self, pattern: &str) -> String {
        format!("{}:{}:{}", self.prefix, self.version, pattern)
    }

    /// Every key of this site, all versions (what `clear` removes).
    pub fn everything(&self) -> String {
        format!("{}:*", escape_glob(&self.prefix))
    }
}

/// Keeps `[A-Za-z0-9_.-]`, percent-encodes the rest.
fn escape_into(out: &mut String, part: &str) {
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Redis `MATCH` glob semantics (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`), so the
/// in-process backend deletes exactly what Redis would.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        let (mut pi, mut ti) = (0, 0);
        let (mut star_p, mut star_t) = (usize::MAX, 0);
        while ti < t.len() {
            if pi < p.len() {
                match p[pi] {
                    b'*' => {
                        star_p = pi;
                        star_t = ti;
                        pi += 1;
                        continue;
                    }
                    b'?' => {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                    b'[' => {
                        if let Some((matched, next)) = class(p, pi, t[ti]) {
                            if matched {
                                pi = next;
                                ti += 1;
                                continue;
                            }
                        } else if t[ti] == b'[' {
                            pi += 1;
                            ti += 1;
                            continue;
                        }
                    }
                    b'\\' if pi + 1 < p.len() => {
                        if p[pi + 1] == t[ti] {
                            pi += 2;
                            ti += 1;
                            continue;
                        }
                    }
                    c => {
                        if c == t[ti] {
                            pi += 1;
                            ti += 1;
                            continue;
                        }
                    }
                }
            }
            if star_p == usize::MAX {
                return false;
            }
            pi = star_p + 1;
            star_t += 1;
            ti = star_t;
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
    /// Matches `c` against the class starting at `p[start] == '['`; returns whether it
    /// matched and the index after the class, or None for an unclosed class.
    fn class(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
        let mut i = start + 1;
        let negate = i < p.len() && p[i] == b'^';
        if negate {
            i += 1;
        }
        let mut matched = false;
        while i < p.len() && p[i] != b']' {
            if p[i] == b'\\' && i + 1 < p.len() {
                matched |= p[i + 1] == c;
                i += 2;
            } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                let (lo, hi) = if p[i] <= p[i + 2] {
                    (p[i], p[i + 2])
                } else {
                    (p[i + 2], p[i])
                };
                matched |= lo <= c && c <= hi;
                i += 3;
            } else {
                matched |= p[i] == c;
                i += 1;
            }
        }
        if i >= p.len() {
            return None;
        }
        Some((matched != negate, i + 1))
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_prefix_version_family_and_escaped_parts() {
        let keys = KeyMaker::new("site", 3);
        assert_eq!(
            keys.key("posts", ["recent", "12"]).as_str(),
            "site:3:posts:recent:12"
        );
        let evil = keys.key("post", ["x:*:y?[a]"]);
        assert_eq!(evil.as_str(), "site:3:post:x%3A%2A%3Ay%3F%5Ba%5D");
        assert!(!glob_match(&keys.pattern("posts:*"), evil.as_str()));
    }

    #[test]
    fn long_keys_are_hashed_within_their_family() {
        let keys = KeyMaker::new("site", 1);
        let key = keys.key("query", ["x".repeat(500)]);
        assert!(key.as_str().len() <= MAX_KEY_LEN);
        assert!(key.as_str().starts_with("site:1:query:#"));
        assert_ne!(key, keys.key("query", ["y".repeat(500)]));
        assert!(glob_match(&keys.pattern("query:*"), key.as_str()));
    }

    #[test]
    fn glob_follows_redis() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("h[ae]llo", "hello"));
        assert!(!glob_match("h[^e]llo", "hello"));
        assert!(glob_match("h[a-c]llo", "hbllo"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("blog_*", "blog_"));
        assert!(!glob_match("blog_*", "xblog_1"));
        assert!(glob_match("*", ""));
    }
}
