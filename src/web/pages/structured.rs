//! Structured data for search engines and link previews: schema.org JSON-LD, embedded
//! in a `<script type="application/ld+json">` by the base layout.

use serde_json::{json, Value};

use crate::content::models::{PersonalInfo, PostSummary, SocialLink};

/// `value` as JSON safe inside a `<script>` element: every `<` is escaped (JSON reads
/// `\u003c` as `<`), so no text of a post can close the element.
fn script_json(value: &Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

fn iso(t: chrono::NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A post as a schema.org `BlogPosting` (what Google's article rich results read:
/// headline, image, dates, author).
pub fn blog_posting(post: &PostSummary, url: &str, image: &str, site_url: &str) -> String {
    let mut value = json!({
        "@context": "https://schema.org",
        "@type": "BlogPosting",
        "headline": post.title,
        "description": post.excerpt,
        "url": url,
        "mainEntityOfPage": { "@type": "WebPage", "@id": url },
        "image": [image],
        "author": {
            "@type": "Person",
            "name": post.author.name,
            "url": format!("{site_url}/about/"),
        },
        "dateModified": iso(post.updated_at),
        "timeRequired": format!("PT{}M", post.reading_minutes),
        "keywords": post.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
    });
    if let Some(at) = post.published_at {
        value["datePublished"] = json!(iso(at));
    }
    script_json(&value)
}

/// The site's owner as a schema.org `Person` (the about page).
pub fn person(info: &PersonalInfo, links: &[SocialLink], image: &str, site_url: &str) -> String {
    let mut value = json!({
        "@context": "https://schema.org",
        "@type": "Person",
        "name": info.name,
        "url": format!("{site_url}/about/"),
        "image": image,
        "sameAs": links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
    });
    let optional = [
        ("jobTitle", &info.headline),
        ("description", &info.bio),
        ("email", &info.email),
    ];
    for (field, text) in optional {
        if !text.trim().is_empty() {
            value[field] = json!(text.trim());
        }
    }
    if !info.location.trim().is_empty() {
        value["homeLocation"] = json!({ "@type": "Place", "name": info.location.trim() });
    }
    script_json(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_text_closes_the_script_element() {
        let out = script_json(&json!({ "headline": "</script><script>alert(1)</script>" }));
        assert!(!out.contains('<'), "{out}");
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["headline"], "</script><script>alert(1)</script>");
    }
}
