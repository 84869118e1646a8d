//! Cache keys: `{prefix}:{version}:{family}:{part}:{part}…`, as Django's `make_key`.
//! Parts are percent-escaped so user input (a slug, a query string) can neither
//! contain a glob character nor a `:` that would let it match another family's
//! pattern; keys over `MAX_KEY_LEN` are hashed, keeping the family so pattern
//! deletion by family still works.

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
    /// `{prefix}:{version}:`, which every data key starts with.
    stem: String,
}

impl KeyMaker {
    pub fn new(prefix: &str, version: u32) -> Self {
        KeyMaker {
            prefix: prefix.to_string(),
            version,
            stem: format!("{prefix}:{version}:"),
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
        let mut full = String::with_capacity(self.stem.len() + family.len() + 48);
        full.push_str(&self.stem);
        full.push_str(family);
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

    /// The key under which a tag's current version is kept. Not under the key version:
    /// during a rolling deploy that bumps it, a write on a new instance must still drop
    /// what old instances cached (and the other way round). No data key can take this
    /// form: theirs have a number where this has `tag`.
    pub fn tag_key(&self, tag: &str) -> String {
        let mut full = format!("{}:tag:", self.prefix);
        escape_into(&mut full, tag);
        full
    }

    /// Where a session is kept: outside the key version (a rolling deploy that bumps it
    /// signs no one out) and outside `everything` (nor does clearing the cache).
    pub fn session_key(&self, id: &str) -> Key {
        let mut full = format!("{}@session:", self.prefix);
        escape_into(&mut full, id);
        Key {
            family: "session",
            full,
        }
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
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // Runs of safe bytes are copied whole. A run starts after an escaped byte and
    // holds ASCII only, so both its ends are character boundaries.
    let mut run = 0;
    for (i, b) in part.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            continue;
        }
        if i > run {
            out.push_str(&part[run..i]);
        }
        out.push('%');
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
        run = i + 1;
    }
    if run < part.len() {
        out.push_str(&part[run..]);
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

/// Redis `MATCH` glob semantics (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`), edge cases
/// included, so the in-process backend deletes exactly what Redis would: a port of
/// Redis 7's `stringmatchlen` (util.c), checked against a real server by a property test.
/// Reads past the end of the pattern see a NUL, as C does.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // SCAN and KEYS take a lone `*` as "every key", the empty one included.
    if pattern == "*" {
        return true;
    }
    let mut skip_longer = false;
    string_match(
        pattern.as_bytes(),
        0,
        text.as_bytes(),
        0,
        &mut skip_longer,
        0,
    )
}

fn string_match(
    p: &[u8],
    mut pi: usize,
    s: &[u8],
    mut si: usize,
    skip_longer: &mut bool,
    nesting: u32,
) -> bool {
    // Protection against abusive patterns, as Redis does.
    if nesting > 1000 {
        return false;
    }
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while pi < p.len() && at(pi + 1) == b'*' {
                    pi += 1;
                }
                if p.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if string_match(p, pi + 1, s, si, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                // Nothing after this star matches anywhere in the rest: no earlier star
                // can make it match either.
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negate = at(pi) == b'^';
                if negate {
                    pi += 1;
                }
                let mut matched = false;
                loop {
                    if at(pi) == b'\\' && p.len() - pi >= 2 {
                        pi += 1;
                        matched |= p[pi] == s[si];
                    } else if at(pi) == b']' {
                        break;
                    } else if pi >= p.len() {
                        // Unclosed: the class runs to the end of the pattern.
                        pi -= 1;
                        break;
                    } else if p.len() - pi >= 3 && p[pi + 1] == b'-' {
                        let (lo, hi) = (p[pi].min(p[pi + 2]), p[pi].max(p[pi + 2]));
                        matched |= lo <= s[si] && s[si] <= hi;
                        pi += 2;
                    } else {
                        matched |= p[pi] == s[si];
                    }
                    pi += 1;
                }
                if matched == negate {
                    return false;
                }
                si += 1;
            }
            c => {
                let literal = if c == b'\\' && p.len() - pi >= 2 {
                    pi += 1;
                    p[pi]
                } else {
                    c
                };
                if literal != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= p.len() && si == s.len()
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
        let unicode = keys.key("post", ["é-a b", "ü"]);
        assert_eq!(unicode.as_str(), "site:3:post:%C3%A9-a%20b:%C3%BC");
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

    proptest::proptest! {
        /// Whatever users put in the parts: keys stay short, hold no glob or separator
        /// character of their own, never collide, and never match another family.
        #[test]
        fn user_input_cannot_shape_keys(a in proptest::collection::vec(".{0,80}", 0..4),
                                        b in proptest::collection::vec(".{0,80}", 0..4)) {
            let keys = KeyMaker::new("site", 1);
            let (ka, kb) = (keys.key("post", &a), keys.key("post", &b));
            for (parts, key) in [(&a, &ka), (&b, &kb)] {
                proptest::prop_assert!(key.as_str().len() <= MAX_KEY_LEN);
                proptest::prop_assert!(key.as_str().bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-%:#".contains(&c)));
                proptest::prop_assert_eq!(glob_match(&keys.pattern("post:*"), key.as_str()), !parts.is_empty());
                proptest::prop_assert!(!glob_match(&keys.pattern("posts:*"), key.as_str()));
            }
            proptest::prop_assert_eq!(a == b, ka == kb);
        }
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
