//! Markdown → sanitized HTML, and plain-text excerpts. Post bodies are rendered once on
//! write and stored, so reads never parse Markdown.

use std::collections::HashMap;

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

use super::images::{Format, VARIANT_WIDTHS};

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
}

/// Renders Markdown to HTML with anything unsafe (scripts, event handlers, `javascript:`
/// links) removed by ammonia; authors' raw HTML is allowed only as far as ammonia allows.
pub fn to_safe_html(markdown: &str) -> String {
    to_safe_html_with(markdown, &HashMap::new())
}

/// The size of an uploaded image a post shows (for its `srcset` and dimensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSize {
    pub width: u32,
    pub height: u32,
}

/// `to_safe_html`, with each uploaded image in `media` (by hash; see `parse_media_url`)
/// given its width and height (no layout shift while it loads), its resized copies in
/// `srcset`, and lazy loading.
pub fn to_safe_html_with(markdown: &str, media: &HashMap<String, MediaSize>) -> String {
    let mut events = Vec::new();
    // An uploaded image being read: its tag, and its alt text so far.
    let mut image: Option<(String, String)> = None;
    for event in Parser::new_ext(markdown, options()) {
        if let Some((tag, alt)) = &mut image {
            match event {
                Event::End(TagEnd::Image) => {
                    let html = tag.replace("{alt}", &escape(alt));
                    events.push(Event::InlineHtml(html.into()));
                    image = None;
                }
                Event::Text(t) | Event::Code(t) => alt.push_str(&t),
                _ => {}
            }
            continue;
        }
        if let Event::Start(Tag::Image { dest_url, .. }) = &event {
            if let Some(tag) = media_img(dest_url, media) {
                image = Some((tag, String::new()));
                continue;
            }
        }
        events.push(event);
    }
    let mut unsafe_html = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut unsafe_html, events.into_iter());
    ammonia::Builder::default()
        .add_tag_attributes("code", &["class"])
        .add_tag_attributes("span", &["class"])
        .add_tag_attributes("img", &["srcset", "sizes", "loading", "decoding"])
        .clean(&unsafe_html)
        .to_string()
}

/// The `<img>` of an uploaded image (`{alt}` to fill in), or None for any other URL.
fn media_img(url: &str, media: &HashMap<String, MediaSize>) -> Option<String> {
    let (hash, format) = parse_media_url(url)?;
    let size = media.get(&hash)?;
    let src = media_url(&hash, format);
    Some(format!(
        r#"<img src="{src}" srcset="{}" sizes="(max-width: 46rem) 100vw, 46rem" width="{}" height="{}" alt="{{alt}}" loading="lazy" decoding="async">"#,
        srcset(&hash, format, size.width),
        size.width,
        size.height
    ))
}

/// Where an uploaded image is served: named by its hash, so it never changes.
pub fn media_url(hash: &str, format: Format) -> String {
    format!("/media/{hash}.{}", format.ext())
}

/// An uploaded image's `srcset`: its resized copies (those narrower than it), and
/// itself at its own width.
pub fn srcset(hash: &str, format: Format, width: u32) -> String {
    let copies = match format {
        Format::Gif => Vec::new(),
        _ => VARIANT_WIDTHS.into_iter().filter(|w| *w < width).collect(),
    };
    copies
        .into_iter()
        .map(|w| format!("/media/{hash}-{w}w.{} {w}w", format.ext()))
        .chain(std::iter::once(format!(
            "{} {width}w",
            media_url(hash, format)
        )))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `/media/<hash>.<ext>` (exactly: 32 lowercase hex digits, a known format) at the
/// start of `text` → the hash and format.
pub fn parse_media_url(text: &str) -> Option<(String, Format)> {
    let rest = text.strip_prefix("/media/")?;
    let hash = rest.get(..32)?;
    if !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let ext: String = rest[32..]
        .strip_prefix('.')?
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    Some((hash.to_string(), Format::from_ext(&ext)?))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole text without markup (what search indexes): words of text and code, a
/// space at each break and block end so words never run together.
pub fn plain_text(markdown: &str) -> String {
    let mut text = String::with_capacity(markdown.len());
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Text(t) | Event::Code(t) => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak | Event::End(_) => text.push(' '),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first paragraph as plain text, cut at a word boundary near `max_chars`.
pub fn excerpt(markdown: &str, max_chars: usize) -> String {
    let mut text = String::new();
    let mut in_paragraph = false;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Paragraph) => in_paragraph = true,
            Event::End(TagEnd::Paragraph) if !text.trim().is_empty() => break,
            Event::End(TagEnd::Paragraph) => in_paragraph = false,
            Event::Text(t) | Event::Code(t) if in_paragraph => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak if in_paragraph => text.push(' '),
            _ => {}
        }
    }
    truncate_words(text.trim(), max_chars)
}

pub fn truncate_words(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if i > max_chars / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!(
        "{}…",
        cut.trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
    )
}

/// A URL slug: lowercase ASCII letters and digits separated by single hyphens.
pub fn slugify(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_removed_and_markdown_rendered() {
        let html =
            to_safe_html("# Hi\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) **bold**");
        assert!(html.contains("<h1>Hi</h1>"));
        assert!(html.contains("<strong>bold</strong>"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("javascript:"));
    }

    #[test]
    fn excerpt_takes_first_paragraph_and_cuts_on_words() {
        let md = "# Title\n\nFirst `code` paragraph\nwraps here.\n\nSecond.";
        assert_eq!(excerpt(md, 200), "First code paragraph wraps here.");
        assert_eq!(excerpt(md, 12), "First code…");
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slugify("Hello, World! Rust & Redis"),
            "hello-world-rust-redis"
        );
        assert_eq!(slugify("  --Caching 101--"), "caching-101");
    }
}

#[cfg(test)]
mod fuzz {
    use super::to_safe_html;
    use proptest::prelude::*;

    /// Pieces of attacks and of ordinary Markdown, shuffled together.
    const PIECES: &[&str] = &[
        "<script>alert(1)</script>",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<iframe src=//evil>",
        "<a href=\"javascript:evil()\">x</a>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "![i](javascript:alert(1))",
        "<style>body{}</style>",
        "<div style=\"x\" onclick=\"y\">",
        "<a href=\"data:text/html,<script>x</script>\">d</a>",
        "<object data=x>",
        "<embed src=x>",
        "<form action=x><input></form>",
        "<meta http-equiv=refresh content=0>",
        "<base href=//evil/>",
        "**bold**",
        "`code`",
        "```\n<script>x</script>\n```",
        "\n\n",
        "> quote",
        "- item",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "<",
        ">",
        "\"",
        "'",
        "=",
        " on",
        "javascript",
        ":",
        "&",
        "&#x3C;script&#x3E;",
        "\\",
        "[",
        "]",
        "(",
        ")",
    ];

    proptest! {
        #[test]
        fn sanitized_output_never_runs_anything(pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..24)) {
            let html = to_safe_html(&pieces.concat());
            let lower = html.to_lowercase();
            for tag in ["<script", "<iframe", "<style", "<object", "<embed", "<form", "<meta", "<base", "<svg"] {
                prop_assert!(!lower.contains(tag), "{tag} in {html}");
            }
            // Inside every tag: no event handler, no script URL.
            for tag in lower.split('<').skip(1).filter_map(|t| t.split('>').next()) {
                for attr in tag.split_whitespace().skip(1) {
                    let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
                    prop_assert!(!name.starts_with("on"), "handler {attr} in {html}");
                    let value = value.trim_matches(|c| c == '"' || c == '\'');
                    for scheme in ["javascript:", "data:", "vbscript:"] {
                        prop_assert!(!value.starts_with(scheme), "{attr} in {html}");
                    }
                }
            }
        }
    }
}
