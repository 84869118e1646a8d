//! Seeding: the hand-written fixtures under `fixtures/` (embedded in the binary, so
//! `seed` works wherever the binary runs) and deterministic generated posts for load
//! tests. Everything is insert-if-absent, so running it twice changes nothing.

use chrono::{Duration, NaiveDateTime};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::markdown::slugify;
use super::models::*;
use super::Repository;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("fixture {file}: {reason}")]
    Fixture { file: &'static str, reason: String },
}

const SITE_JSON: &str = include_str!("../../fixtures/site.json");

/// (file name, contents) of each fixture post.
const POSTS: &[(&str, &str)] = &[
    (
        "cache-invalidation-without-tears.md",
        include_str!("../../fixtures/posts/cache-invalidation-without-tears.md"),
    ),
    (
        "one-binary-two-databases.md",
        include_str!("../../fixtures/posts/one-binary-two-databases.md"),
    ),
    (
        "etags-and-the-304-you-deserve.md",
        include_str!("../../fixtures/posts/etags-and-the-304-you-deserve.md"),
    ),
    (
        "stampedes-and-single-flight.md",
        include_str!("../../fixtures/posts/stampedes-and-single-flight.md"),
    ),
    (
        "a-year-of-building-with-ai-tools.md",
        include_str!("../../fixtures/posts/a-year-of-building-with-ai-tools.md"),
    ),
    (
        "markdown-is-enough.md",
        include_str!("../../fixtures/posts/markdown-is-enough.md"),
    ),
    (
        "draft-notes-on-redis-cluster.md",
        include_str!("../../fixtures/posts/draft-notes-on-redis-cluster.md"),
    ),
];

#[derive(Deserialize)]
struct SiteFixture {
    personal_info: NewPersonalInfo,
    authors: Vec<NewAuthor>,
    social_links: Vec<NewSocialLink>,
    ai_tools: Vec<NewAiTool>,
}

/// What a seed run added (zeros on a second run).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub posts: usize,
    pub social_links: usize,
    pub ai_tools: usize,
    pub personal_info: bool,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added {} posts, {} social links, {} AI tools{}",
            self.posts,
            self.social_links,
            self.ai_tools,
            if self.personal_info {
                ", personal info"
            } else {
                ""
            }
        )
    }
}

/// Loads the fixtures; existing rows (same slug or name) are left as they are.
pub async fn seed_fixtures(repo: &Repository) -> Result<SeedReport, SeedError> {
    let site: SiteFixture = serde_json::from_str(SITE_JSON).map_err(|e| SeedError::Fixture {
        file: "site.json",
        reason: e.to_string(),
    })?;
    let mut report = SeedReport {
        personal_info: repo.ensure_personal_info(&site.personal_info).await?,
        ..Default::default()
    };
    let mut authors = Vec::new();
    for author in &site.authors {
        authors.push(repo.ensure_author(author).await?);
    }
    for link in &site.social_links {
        report.social_links += repo.ensure_social_link(link).await? as usize;
    }
    for tool in &site.ai_tools {
        report.ai_tools += repo.ensure_ai_tool(tool).await? as usize;
    }
    for (file, text) in POSTS {
        let fixture = parse_post(file, text)?;
        let author = authors
            .iter()
            .find(|a| a.slug == fixture.author)
            .ok_or_else(|| SeedError::Fixture {
                file,
                reason: format!("unknown author '{}'", fixture.author),
            })?;
        let post = PostInput {
            cover_image: String::new(),
            author_id: author.id,
            ..fixture.post
        };
        report.posts += repo.create_post_if_absent(post).await?.is_some() as usize;
    }
    if report.posts > 0 {
        repo.analyze().await?;
    }
    Ok(report)
}

struct PostFixture {
    author: String,
    post: PostInput,
}

/// Parses a fixture post: a `---` block of `key: value` lines, then Markdown.
fn parse_post(file: &'static str, text: &str) -> Result<PostFixture, SeedError> {
    let bad = |reason: &str| SeedError::Fixture {
        file,
        reason: reason.to_string(),
    };
    let rest = text
        .strip_prefix("---\n")
        .ok_or_else(|| bad("must start with a --- header"))?;
    let (header, body) = rest
        .split_once("\n---\n")
        .ok_or_else(|| bad("header is not closed by ---"))?;
    let field = |key: &str| {
        header.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let title = field("title").ok_or_else(|| bad("missing title"))?;
    let published = field("published").map(|v| v == "true").unwrap_or(true);
    let published_at = match field("published_at") {
        Some(v) => Some(
            NaiveDateTime::parse_from_str(&v, "%Y-%m-%dT%H:%M:%S")
                .map_err(|e| bad(&format!("published_at: {e}")))?,
        ),
        None => None,
    };
    Ok(PostFixture {
        author: field("author").ok_or_else(|| bad("missing author"))?,
        post: PostInput {
            cover_image: String::new(),
            slug: field("slug").unwrap_or_else(|| slugify(&title)),
            title,
            body_markdown: body.trim_start().to_string(),
            excerpt: field("excerpt"),
            author_id: 0,
            tags: field("tags").map(|t| split_list(&t)).unwrap_or_default(),
            published,
            published_at: published_at.filter(|_| published),
            featured: field("featured").map(|v| v == "true").unwrap_or(false),
        },
    })
}

const GENERATED_TAGS: &[&str] = &[
    "Rust",
    "Caching",
    "Redis",
    "PostgreSQL",
    "SQLite",
    "Performance",
    "Web",
    "Actix",
    "Databases",
    "Testing",
    "Observability",
    "DevOps",
    "Security",
    "Design",
    "Career",
    "AI",
    "Tooling",
    "Architecture",
    "Concurrency",
    "Writing",
];
const GENERATED_AUTHORS: &[(&str, &str)] = &[
    ("Grace Hopper", "grace-hopper"),
    ("Alan Turing", "alan-turing"),
    ("Barbara Liskov", "barbara-liskov"),
    ("Ken Thompson", "ken-thompson"),
];
const TOOL_CATEGORIES: &[&str] = &["Coding", "Writing", "Research", "Images", "Productivity"];
const WORDS: &[&str] = &[
    "cache",
    "latency",
    "request",
    "database",
    "index",
    "query",
    "server",
    "template",
    "fragment",
    "header",
    "memory",
    "eviction",
    "pool",
    "thread",
    "shard",
    "replica",
    "benchmark",
    "deploy",
    "metric",
    "trace",
    "budget",
    "window",
    "stream",
    "batch",
    "schema",
    "migration",
    "token",
];

/// Adds `count` generated posts (and ~30 generated AI tools), the same ones every time:
/// the RNG has a fixed seed and slugs are numbered, so re-running adds nothing.
pub async fn seed_generated(repo: &Repository, count: usize) -> Result<SeedReport, SeedError> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_f011);
    let mut report = SeedReport::default();
    let mut authors = Vec::new();
    for (name, slug) in GENERATED_AUTHORS {
        let author = NewAuthor {
            name: name.to_string(),
            slug: slug.to_string(),
            bio: format!("{name} writes about systems."),
        };
        authors.push(repo.ensure_author(&author).await?);
    }
    for i in 1..=30 {
        let category = TOOL_CATEGORIES[i % TOOL_CATEGORIES.len()];
        let tool = NewAiTool {
            name: format!("Generated Tool {i:02}"),
            slug: format!("generated-tool-{i:02}"),
            url: format!("https://tools.example.com/{i:02}"),
            description: format!(
                "A generated {} assistant for load tests.",
                category.to_lowercase()
            ),
            category: category.to_string(),
            featured: i % 7 == 0,
            sort_order: 100 + i as i32,
        };
        report.ai_tools += repo.ensure_ai_tool(&tool).await? as usize;
    }
    // Seven hours apart in slug order, the last on 2024-01-01: all in the past (a later
    // date would schedule the post), whatever the count, and older than the fixtures.
    let last = NaiveDateTime::parse_from_str("2024-01-01T08:00:00", "%Y-%m-%dT%H:%M:%S")
        .expect("valid date");
    let base = last - Duration::hours(7 * (count as i64 - 1));
    let vocabulary = Vocabulary::new();
    for i in 1..=count {
        let title_words: Vec<&str> = (0..4)
            .map(|_| *WORDS.choose(&mut rng).expect("words"))
            .collect();
        let title = format!("{} #{i}", capitalize(&title_words.join(" ")));
        let paragraphs: Vec<String> = (0..rng.random_range(3..7))
            .map(|_| {
                let sentence: Vec<&str> = (0..rng.random_range(12..30))
                    .map(|_| vocabulary.word(&mut rng))
                    .collect();
                format!("{}.", capitalize(&sentence.join(" ")))
            })
            .collect();
        let tag_count = rng.random_range(1..4);
        let tags: Vec<String> = GENERATED_TAGS
            .choose_multiple(&mut rng, tag_count)
            .map(|t| t.to_string())
            .collect();
        let author = authors.choose(&mut rng).expect("authors");
        let published = rng.random_ratio(9, 10);
        let post = PostInput {
            cover_image: String::new(),
            title,
            slug: format!("generated-post-{i}"),
            body_markdown: format!("## Notes\n\n{}", paragraphs.join("\n\n")),
            excerpt: None,
            author_id: author.id,
            tags,
            published,
            published_at: published.then(|| base + Duration::hours(7 * (i as i64 - 1))),
            featured: rng.random_ratio(1, 20),
        };
        report.posts += repo.create_post_if_absent(post).await?.is_some() as usize;
    }
    if report.posts > 0 {
        repo.analyze().await?;
    }
    Ok(report)
}

/// The words of generated bodies: `WORDS` first, then made-up words, drawn with
/// Zipf-like frequencies (the k-th word about 1/k as often as the first), as in real
/// text: the first words appear in most posts, most words in few. With `WORDS` alone,
/// every search of a generated site matched every post.
struct Vocabulary {
    words: Vec<String>,
    /// Cumulative weights, for drawing by binary search.
    cumulative: Vec<f64>,
}

impl Vocabulary {
    const MADE_UP: usize = 3_000;

    fn new() -> Self {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "po", "qua", "bel", "dor", "fen",
            "gri", "hal", "jun", "kel", "mor", "nix",
        ];
        let n = SYLLABLES.len();
        let made_up = (0..Self::MADE_UP).map(|i| {
            format!(
                "{}{}{}",
                SYLLABLES[i % n],
                SYLLABLES[(i / n) % n],
                SYLLABLES[(i / n / n) % n]
            )
        });
        let words: Vec<String> = WORDS.iter().map(|w| w.to_string()).chain(made_up).collect();
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|k| {
                total += 1.0 / k as f64;
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    fn word(&self, rng: &mut impl Rng) -> &str {
        let x = rng.random::<f64>() * self.cumulative.last().copied().unwrap_or(1.0);
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses() {
        for (file, text) in POSTS {
            let fixture = parse_post(file, text).unwrap_or_else(|e| panic!("{e}"));
            assert!(!fixture.post.title.is_empty());
            assert!(!fixture.post.tags.is_empty(), "{file} has tags");
        }
        let site: SiteFixture = serde_json::from_str(SITE_JSON).unwrap();
        assert!(!site.ai_tools.is_empty() && !site.social_links.is_empty());
    }
}
