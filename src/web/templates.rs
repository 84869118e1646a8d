//! Templates and static assets, embedded in the binary so it runs from any directory.
//! Tera is built without its `builtins` feature (chrono-tz and friends cost build time);
//! the few filters the templates need are defined here.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::{Tera, Value};

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

pub const TEMPLATES: &[(&str, &str)] = embed![
    "base.html",
    "components/header.html",
    "components/footer.html",
    "components/post_card.html",
    "components/pagination.html",
    "home/index.html",
    "blog/list.html",
    "blog/detail.html",
    "about/index.html",
    "tools/index.html",
    "contact/form.html",
    "contact/thanks.html",
    "fragments/home_intro.html",
    "fragments/recent_posts.html",
    "fragments/popular_posts.html",
    "fragments/featured_tools.html",
    "fragments/tag_cloud.html",
    "fragments/social_links.html",
    "fragments/post_list.html",
    "fragments/post_body.html",
    "fragments/related_posts.html",
    "fragments/tools.html",
    "fragments/about.html",
    "admin/base.html",
    "admin/login.html",
    "admin/index.html",
    "admin/cache.html",
    "admin/posts.html",
    "admin/post_form.html",
    "admin/post_delete.html",
    "admin/personal_info.html",
    "admin/social_links.html",
    "admin/ai_tools.html",
    "admin/messages.html",
    "errors/404.html",
    "errors/500.html",
    "errors/refused.html",
    "feeds/atom.xml",
    "feeds/sitemap.xml",
    "feeds/opensearch.xml",
    "search/results.html",
];

/// Static files: (name, content type, bytes).
pub const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "site.css",
        "text/css; charset=utf-8",
        include_str!("../../static/site.css"),
    ),
    (
        "avatar.svg",
        "image/svg+xml",
        include_str!("../../static/avatar.svg"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../static/favicon.svg"),
    ),
    (
        "editor.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/editor.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/dashboard.js"),
    ),
];

/// Content-hashed static URLs (`/static/site.css?v=…`) so browsers may cache them for a
/// year and still see a new version after a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Assets {
    pub css: String,
    pub icon: String,
    /// The post editor's image uploads.
    pub editor_js: String,
}

impl Assets {
    pub fn new() -> Self {
        let versioned = |name: &str| {
            let (_, _, body) = STATIC_FILES
                .iter()
                .find(|(n, _, _)| *n == name)
                .expect("an embedded static file");
            format!("/static/{name}?v={}", short_hash(body))
        };
        Assets {
            css: versioned("site.css"),
            icon: versioned("favicon.svg"),
            editor_js: versioned("editor.js"),
        }
    }
}

impl Default for Assets {
    fn default() -> Self {
        Self::new()
    }
}

pub fn short_hash(content: &str) -> String {
    hex::encode(&Sha256::digest(content.as_bytes())[..6])
}

/// `tera.render`, traced as a `template.render` span (a page with fragments renders its
/// template twice: once to collect them, once to serve).
pub fn render(tera: &Tera, template: &str, ctx: &tera::Context) -> tera::Result<String> {
    tracing::debug_span!("template.render", template.name = template)
        .in_scope(|| tera.render(template, ctx))
}

pub fn build() -> tera::Result<Tera> {
    let mut tera = Tera::default();
    tera.add_raw_templates(TEMPLATES.iter().copied())?;
    tera.autoescape_on(vec![".html", ".xml"]);
    tera.set_escape_fn(escape);
    tera.register_filter("date", date_filter);
    Ok(tera)
}

/// `{{ post.published_at | date(format="%B %-d, %Y") }}` over the ISO strings serde
/// writes for `NaiveDateTime`. The default format is ISO-8601 UTC (`…Z`), as feeds need.
fn date_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let Some(raw) = value.as_str() else {
        return Ok(Value::String(String::new()));
    };
    let parsed = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|e| tera::Error::msg(format!("date filter: '{raw}': {e}")))?;
    let format = args
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("%Y-%m-%dT%H:%M:%SZ");
    Ok(Value::String(parsed.format(format).to_string()))
}

/// HTML/XML escaping of `& < > " '`. Tera's default also escapes `/`, which is safe but
/// turns every URL in a page or feed into `&#x2F;` noise.
fn escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}
