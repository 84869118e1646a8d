//! Search syntax: what people type into search boxes — words, `"exact phrases"`, `OR`,
//! `-excluded` — parsed once into a `SearchQuery`, whose canonical text is the cache key
//! and the query shown back to the reader, and which is rendered for each database:
//! quoted FTS5 `MATCH` syntax for SQLite, `websearch_to_tsquery` text for PostgreSQL.
//!
//! Parsing never fails on odd input: FTS5 operators (`*`, `NEAR(`, `col:`, `^`),
//! unbalanced quotes and punctuation are text, split into words at every character that
//! is not a letter or a digit (as both databases' tokenizers do), so `foo:bar` is the
//! phrase `"foo bar"`. Canonical form: Unicode NFKC, lower case, single spaces, `OR`
//! between alternatives (`or` in any case, as PostgreSQL reads it); word order is kept (it matters inside phrases, and the reader
//! sees the query as typed). Only an empty query, one of exclusions only, or one over
//! the limits is refused, with a message for the reader.

pub mod gate;
pub mod popular;

use std::fmt::Write as _;

use unicode_normalization::UnicodeNormalization;

/// Longest query accepted, in characters (after normalisation).
pub const MAX_QUERY_CHARS: usize = 200;
/// Most words and phrases in a query.
pub const MAX_TERMS: usize = 12;

/// Marks around a matched word in a snippet, as the database returns it: private-use
/// characters, removed from every indexed text (`index_text`), so a post cannot forge
/// them; `snippet_html` turns them into `<mark>` after escaping everything else.
pub const MARK_START: char = '\u{E000}';
pub const MARK_END: char = '\u{E001}';

/// A word or a phrase (several words in order), possibly excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub words: Vec<String>,
    pub excluded: bool,
}

/// A parsed query: every group must match (AND); a group matches when any of its terms
/// does (OR). Excluded terms are groups of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    groups: Vec<Vec<Term>>,
    canonical: String,
}

/// Why a query is not searched; the message is shown to the reader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("type a word to search for")]
    Empty,
    #[error("add a word to search for: a search with only excluded words (-word) finds nothing")]
    OnlyExclusions,
    #[error("the search is too long: at most {MAX_QUERY_CHARS} characters and {MAX_TERMS} words or phrases")]
    TooLong,
    /// Not about the query: the address's previous uncached search is still running
    /// (`gate`). Answered 429 with Retry-After.
    #[error("one search at a time, please: your previous search is still running; try again in a second")]
    Busy,
}

/// A raw token before grouping.
enum Token {
    Term(Term),
    Or,
}

impl SearchQuery {
    pub fn parse(raw: &str) -> Result<SearchQuery, QueryError> {
        let text = fold(raw);
        if text.chars().count() > MAX_QUERY_CHARS * 2 {
            return Err(QueryError::TooLong);
        }
        let tokens = tokenize(&text);
        let mut groups: Vec<Vec<Term>> = Vec::new();
        // Whether the previous token was an OR joining the next term to the last group.
        let mut join = false;
        for token in tokens {
            match token {
                Token::Or => {
                    join = groups
                        .last()
                        .is_some_and(|g| g.last().is_some_and(|t| !t.excluded));
                }
                Token::Term(term) => {
                    match groups.last_mut() {
                        Some(group) if join && !term.excluded => group.push(term),
                        _ => groups.push(vec![term]),
                    }
                    join = false;
                }
            }
        }
        // The same term twice says nothing more.
        let mut unique: Vec<Vec<Term>> = Vec::new();
        for mut group in groups {
            let mut seen: Vec<Term> = Vec::new();
            group.retain(|t| {
                let new = !seen.contains(t);
                seen.push(t.clone());
                new
            });
            if !unique.contains(&group) {
                unique.push(group);
            }
        }
        let groups = unique;
        if groups.is_empty() {
            return Err(QueryError::Empty);
        }
        if groups.iter().all(|g| g.iter().all(|t| t.excluded)) {
            return Err(QueryError::OnlyExclusions);
        }
        if groups.iter().map(Vec::len).sum::<usize>() > MAX_TERMS {
            return Err(QueryError::TooLong);
        }
        let canonical = render_canonical(&groups);
        if canonical.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        Ok(SearchQuery { groups, canonical })
    }

    /// The canonical text: the cache key, the query shown back, and valid input to this
    /// parser (parsing it again gives the same query).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    pub fn groups(&self) -> &[Vec<Term>] {
        &self.groups
    }

    /// FTS5 `MATCH` text: every word in double quotes, so nothing the reader typed is
    /// read as FTS5 syntax. `("a" OR "b c") AND "d" NOT "e"`.
    pub fn fts5(&self) -> String {
        let quoted = |t: &Term| format!("\"{}\"", t.words.join(" "));
        let positive: Vec<String> = self
            .groups
            .iter()
            .filter(|g| !g[0].excluded)
            .map(|g| match g.len() {
                1 => quoted(&g[0]),
                _ => format!(
                    "({})",
                    g.iter().map(quoted).collect::<Vec<_>>().join(" OR ")
                ),
            })
            .collect();
        let mut out = format!("({})", positive.join(" AND "));
        for group in self.groups.iter().filter(|g| g[0].excluded) {
            let _ = write!(out, " NOT {}", quoted(&group[0]));
        }
        out
    }

    /// PostgreSQL `websearch_to_tsquery` text: the canonical form is already that syntax.
    pub fn websearch(&self) -> &str {
        &self.canonical
    }
}

fn render_canonical(groups: &[Vec<Term>]) -> String {
    let term = |t: &Term| {
        let body = match t.words.len() {
            1 if t.words[0] != "or" => t.words[0].clone(),
            _ => format!("\"{}\"", t.words.join(" ")),
        };
        match t.excluded {
            true => format!("-{body}"),
            false => body,
        }
    };
    groups
        .iter()
        .map(|g| g.iter().map(term).collect::<Vec<_>>().join(" OR "))
        .collect::<Vec<_>>()
        .join(" ")
}

/// NFKC and lower case, repeated until neither changes the text. One pass of each is
/// not a fixed point: lower-casing `İ` gives `i` and a combining dot above (which no
/// precomposed letter absorbs), and NFKC can turn a lower-case compatibility character
/// into text that lower-cases again; so the canonical form of the canonical form would
/// differ, and the reader would be redirected twice.
fn fold(raw: &str) -> String {
    let mut text: String = raw.nfkc().collect();
    for _ in 0..4 {
        let next: String = text.to_lowercase().nfkc().collect();
        if next == text {
            break;
        }
        text = next;
    }
    text
}

/// A character inside a word: a letter or digit, or a combining mark (the dot of `i̇`,
/// an accent no precomposed letter has), which must not split the word it marks.
fn in_word(c: char) -> bool {
    c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c)
}

/// Words: runs of letters, digits and their marks (the text is already folded); a run
/// of marks alone is no word.
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !in_word(c))
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(str::to_string)
        .collect()
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let excluded = rest.starts_with('-');
        let after_sign = if excluded { &rest[1..] } else { rest };
        let (chunk, phrase, next) = match after_sign.strip_prefix('"') {
            // A phrase runs to the closing quote, or to the end when there is none.
            Some(inner) => match inner.find('"') {
                Some(end) => (&inner[..end], true, &inner[end + 1..]),
                None => (inner, true, ""),
            },
            None => {
                let end = after_sign
                    .find(char::is_whitespace)
                    .unwrap_or(after_sign.len());
                (&after_sign[..end], false, &after_sign[end..])
            }
        };
        // `or` in any case, as PostgreSQL reads it; a literal "or" is quoted.
        if !phrase && !excluded && chunk.eq_ignore_ascii_case("or") {
            tokens.push(Token::Or);
        } else {
            let words = words_of(chunk);
            if !words.is_empty() {
                tokens.push(Token::Term(Term { words, excluded }));
            } else if phrase || excluded {
                // `""` or a lone `-`: nothing to search for.
            }
        }
        rest = next.trim_start();
    }
    tokens
}

/// Text as it is indexed: without the snippet marks (see `MARK_START`).
pub fn index_text(text: &str) -> String {
    text.chars()
        .filter(|c| *c != MARK_START && *c != MARK_END)
        .collect()
}

/// A snippet from the database as HTML: everything escaped, the marks as `<mark>`.
/// Unbalanced marks (a snippet cut inside a match) are closed.
pub fn snippet_html(snippet: &str) -> String {
    let mut out = String::with_capacity(snippet.len() + 32);
    let mut open = false;
    for c in snippet.chars() {
        match c {
            MARK_START if !open => {
                out.push_str("<mark>");
                open = true;
            }
            MARK_END if open => {
                out.push_str("</mark>");
                open = false;
            }
            MARK_START | MARK_END => {}
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    if open {
        out.push_str("</mark>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(raw: &str) -> String {
        SearchQuery::parse(raw).unwrap().canonical().to_string()
    }

    #[test]
    fn syntax() {
        assert_eq!(canon("  Rust   CACHE "), "rust cache");
        assert_eq!(
            canon("\"Cache Invalidation\" -redis"),
            "\"cache invalidation\" -redis"
        );
        assert_eq!(canon("redis OR memcached tags"), "redis OR memcached tags");
        assert_eq!(canon("foo:bar NEAR(x y) a*"), "\"foo bar\" \"near x\" y a");
        assert_eq!(canon("\"unbalanced phrase"), "\"unbalanced phrase\"");
        assert_eq!(canon("ｒｕｓｔ"), "rust"); // NFKC: full-width letters
        assert_eq!(canon("OR a OR"), "a");
        assert_eq!(canon("a OR -b"), "a -b");
        assert_eq!(canon("rust rust"), "rust");
        assert_eq!(canon("cats or dogs"), "cats OR dogs");
        assert_eq!(canon("\"or\" else"), "\"or\" else");
        assert_eq!(SearchQuery::parse("  "), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse("*:() \"\""), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse("-a -b"), Err(QueryError::OnlyExclusions));
        assert_eq!(
            SearchQuery::parse(&"word ".repeat(13)),
            Ok(SearchQuery::parse("word").unwrap())
        );
        let many: String = (0..13).map(|i| format!("w{i} ")).collect();
        assert_eq!(SearchQuery::parse(&many), Err(QueryError::TooLong));
        assert_eq!(
            SearchQuery::parse(&"x".repeat(201)),
            Err(QueryError::TooLong)
        );
    }

    #[test]
    fn fts5_quotes_everything() {
        let q = SearchQuery::parse("a OR \"b c\" d -e").unwrap();
        assert_eq!(q.fts5(), "((\"a\" OR \"b c\") AND \"d\") NOT \"e\"");
    }

    #[test]
    fn snippets_escape_text_and_mark_matches() {
        let s = format!("<script>x</script> {MARK_START}cache{MARK_END} & {MARK_START}more");
        assert_eq!(
            snippet_html(&s),
            "&lt;script&gt;x&lt;/script&gt; <mark>cache</mark> &amp; <mark>more</mark>"
        );
    }

    proptest! {
        #[test]
        fn canonical_is_a_fixed_point(raw in "\\PC{0,80}") {
            if let Ok(q) = SearchQuery::parse(&raw) {
                let again = SearchQuery::parse(q.canonical()).unwrap();
                prop_assert_eq!(again.canonical(), q.canonical());
                prop_assert_eq!(again.groups(), q.groups());
                // Only words between quotes reach FTS5: no quote inside a word.
                prop_assert!(q.groups().iter().flatten().flat_map(|t| &t.words)
                    .all(|w| w.chars().all(in_word)));
            }
        }

        /// Case mappings that change length or need context, compatibility forms and
        /// combining marks: the canonical form is reached in one step.
        #[test]
        fn canonical_is_reached_at_once_for_odd_letters(
            parts in proptest::collection::vec(prop_oneof![
                Just("İ"), Just("ı"), Just("ß"), Just("ẞ"), Just("ﬁ"), Just("ﬀ"), Just("Σ"), Just("σ"), Just("ς"),
                Just("\u{307}"), Just("\u{301}"), Just("\u{323}"), Just("ǅ"), Just("Å"), Just("Ω"), Just("K"),
                Just("ｒ"), Just("Ⅻ"), Just("ﾊﾟ"), Just("a"), Just("Z"), Just(" "), Just("-"), Just("\""), Just("OR"),
            ], 1..14)
        ) {
            let raw: String = parts.concat();
            if let Ok(q) = SearchQuery::parse(&raw) {
                let again = SearchQuery::parse(q.canonical()).unwrap();
                prop_assert_eq!(again.canonical(), q.canonical(), "from {:?}", raw);
            }
        }
    }

    #[test]
    fn a_dotted_capital_i_stays_one_word() {
        assert_eq!(canon("İstanbul"), canon(&canon("İstanbul")));
        assert_eq!(
            SearchQuery::parse("İstanbul").unwrap().groups()[0][0]
                .words
                .len(),
            1
        );
        assert_eq!(canon("STRASSE ẞ"), "strasse ß");
        assert_eq!(canon("ﬁle"), "file");
    }
}
