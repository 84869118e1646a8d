//! Images: uploads of each accepted format and each kind of bad input, content-addressed
//! URLs cached forever, resized copies in `srcset`, covers in link previews, images
//! shared by instances through the database, and an upload in a real browser.

use std::io::Cursor;

use fantoccini::Locator;
use image::ImageFormat;

use crate::helpers::{spawn_app_with, Backend, TestApp};

/// A `width`×`height` picture in `format`; `seed` changes its pixels.
fn picture(format: ImageFormat, width: u32, height: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, seed])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// Uploads `bytes` as the editor does; (status, JSON answer).
async fn upload(app: &TestApp, bytes: Vec<u8>, name: &str) -> (u16, serde_json::Value) {
    let token = app.csrf_for("/admin/posts/new/").await;
    let res = app
        .client
        .post(app.url(&format!("/admin/images/?name={name}")))
        .header("x-csrf-token", token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.expect("a JSON answer"))
}

/// A PNG that declares 20000×20000 pixels in a few dozen bytes.
fn bomb() -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&crc32(&[kind, data].concat()).to_be_bytes());
        c
    };
    let ihdr = [
        &20_000u32.to_be_bytes()[..],
        &20_000u32.to_be_bytes(),
        &[8, 2, 0, 0, 0],
    ]
    .concat();
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        chunk(b"IEND", &[]),
    ]
    .concat()
}

crate::on_both_app_caches! {
    with &[("MAX_IMAGE_BYTES", "2097152")];

    async fn each_format_uploads_and_is_served_forever(app: TestApp) {
        app.sign_in_admin().await;
        let anonymous = reqwest::Client::new();
        for (format, ext, mime) in [
            (ImageFormat::Jpeg, "jpg", "image/jpeg"),
            (ImageFormat::Png, "png", "image/png"),
            (ImageFormat::WebP, "webp", "image/webp"),
            (ImageFormat::Gif, "gif", "image/gif"),
        ] {
            let bytes = picture(format, 1000, 500, 7);
            let (status, body) = upload(&app, bytes.clone(), &format!("sunset.{ext}")).await;
            assert_eq!(status, 200, "{ext}: {body}");
            let url = body["url"].as_str().unwrap().to_string();
            assert!(url.starts_with("/media/") && url.ends_with(&format!(".{ext}")), "{url}");
            assert_eq!(body["markdown"], format!("![sunset]({url})"));
            assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(1000), Some(500)));
            let res = anonymous.get(app.url(&url)).send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-type"], mime);
            assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");
            let etag = res.headers()["etag"].clone();
            assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..], "the bytes as uploaded");
            let again = anonymous.get(app.url(&url)).header("if-none-match", etag).send().await.unwrap();
            assert_eq!(again.status(), 304);
            // Resized copies narrower than the image (none for GIF: its animation is kept).
            let stem = url.trim_end_matches(&format!(".{ext}"));
            for width in [480u32, 960] {
                let res = anonymous.get(app.url(&format!("{stem}-{width}w.{ext}"))).send().await.unwrap();
                if format == ImageFormat::Gif {
                    assert_eq!(res.status(), 404);
                    continue;
                }
                assert_eq!(res.status(), 200, "{ext} {width}w");
                assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");
                let copy = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
                assert_eq!((copy.width(), copy.height()), (width, width / 2));
            }
            assert_eq!(anonymous.get(app.url(&format!("{stem}-1600w.{ext}"))).send().await.unwrap().status(), 404, "no copy wider than the image");
            assert_eq!(anonymous.get(app.url(&format!("{stem}.bmp"))).send().await.unwrap().status(), 404);
        }
        // Another image is another URL; the first one still shows the first image.
        let (_, first) = upload(&app, picture(ImageFormat::Png, 64, 64, 1), "a.png").await;
        let (_, second) = upload(&app, picture(ImageFormat::Png, 64, 64, 2), "a.png").await;
        assert_ne!(first["url"], second["url"]);
        let old = anonymous.get(app.url(first["url"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(old.as_ref(), &picture(ImageFormat::Png, 64, 64, 1)[..]);
        // A made-up name is a 404 that leaves nothing behind.
        assert_eq!(anonymous.get(app.url("/media/0123456789abcdef0123456789abcdef.png")).send().await.unwrap().status(), 404);
    }

    async fn bad_uploads_get_a_reason(app: TestApp) {
        app.sign_in_admin().await;
        let jpeg = picture(ImageFormat::Jpeg, 300, 200, 3);
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            ("an SVG", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(), 400, "Only JPEG, PNG, WebP and GIF"),
            ("a text file", b"hello".to_vec(), 400, "Only JPEG, PNG, WebP and GIF"),
            ("an empty file", Vec::new(), 400, "empty"),
            ("a truncated JPEG", jpeg[..jpeg.len() / 2].to_vec(), 400, "truncated or damaged"),
            ("a decompression bomb", bomb(), 400, "megapixels"),
            ("a file over MAX_IMAGE_BYTES", picture(ImageFormat::Png, 600, 600, 9).into_iter().chain(vec![0; 2_200_000]).collect(), 413, "at most 2048 KB"),
        ];
        for (what, bytes, status, message) in cases {
            let (got, body) = upload(&app, bytes, "x.png").await;
            assert_eq!(got, status, "{what}: {body}");
            assert!(body["error"].as_str().unwrap().contains(message), "{what}: {body}");
        }
        // Without the form's token, or signed out, nothing is stored.
        let res = app.client.post(app.url("/admin/images/")).body(jpeg.clone()).send().await.unwrap();
        assert_eq!(res.status(), 403);
        let bare = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let res = bare.post(app.url("/admin/images/")).body(jpeg).send().await.unwrap();
        assert_eq!(res.status(), 303, "to the sign-in page");
    }

    async fn images_show_in_posts_with_srcset_and_as_covers(app: TestApp) {
        app.sign_in_admin().await;
        let (_, body_image) = upload(&app, picture(ImageFormat::Jpeg, 2000, 1000, 4), "harbour.jpg").await;
        let (_, cover) = upload(&app, picture(ImageFormat::Png, 1200, 630, 5), "cover.png").await;
        let url = body_image["url"].as_str().unwrap();
        let stem = url.trim_end_matches(".jpg");
        let token = app.csrf_for("/admin/posts/new/").await;
        let markdown = format!("Intro.\n\n{}\n\nAfter.", body_image["markdown"].as_str().unwrap());
        let save = |cover_url: String, markdown: String, token: String| {
            let app = &app;
            async move {
                app.client.post(app.url("/admin/posts/new/"))
                    .form(&[("title", "With pictures"), ("slug", "with-pictures"), ("body_markdown", markdown.as_str()),
                            ("author_id", "1"), ("published", "on"), ("cover_image", cover_url.as_str()), ("csrf_token", token.as_str())])
                    .send().await.unwrap()
            }
        };
        // A cover address that was never uploaded is refused, the text kept.
        let res = save("/media/0123456789abcdef0123456789abcdef.png".into(), markdown.clone(), token.clone()).await;
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(html.contains("No uploaded image has this address") && html.contains("Intro."));
        let res = save(cover["url"].as_str().unwrap().into(), markdown, token).await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.get_text("/blog/with-pictures/").await;
        let expected = format!(
            r#"<img src="{url}" srcset="{stem}-480w.jpg 480w, {stem}-960w.jpg 960w, {stem}-1600w.jpg 1600w, {url} 2000w" sizes="(max-width: 46rem) 100vw, 46rem" width="2000" height="1000" alt="harbour" loading="lazy" decoding="async">"#
        );
        assert!(page.contains(&expected), "the body's image with its copies:\n{page}");
        let cover_url = cover["url"].as_str().unwrap();
        assert!(page.contains(&format!(r#"<img class="cover" src="{cover_url}""#)));
        let absolute = format!("http://blog.example.com{cover_url}");
        assert!(page.contains(&format!(r#"<meta property="og:image" content="{absolute}">"#)), "the cover is the link preview");
        assert!(page.contains(&format!(r#""image":["{absolute}"]"#)), "and the JSON-LD image");
        // Every srcset entry is served.
        for candidate in expected.split("srcset=\"").nth(1).unwrap().split('"').next().unwrap().split(", ") {
            let path = candidate.split(' ').next().unwrap();
            assert_eq!(app.get(path).await.status(), 200, "{path}");
        }
    }
}

/// Images live in the database: another instance (PostgreSQL when available) serves
/// what the first one stored.
#[actix_web::test]
async fn another_instance_serves_an_uploaded_image() {
    let Some(app) = spawn_app_with(Backend::Postgres, &[]).await else {
        return;
    };
    app.sign_in_admin().await;
    let bytes = picture(ImageFormat::Jpeg, 800, 600, 6);
    let (status, body) = upload(&app, bytes.clone(), "shared.jpg").await;
    assert_eq!(status, 200);
    let other = app.second_instance(&[]).await;
    let res = other.get(body["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..]);
}

/// An admin picks a file in the post editor; the image appears in the published post.
#[actix_web::test]
async fn an_admin_uploads_an_image_in_the_editor_in_a_browser() {
    let Some((_driver, port)) = crate::dashboard::start_chromedriver() else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
    app.state.repo.upsert_admin("ada", &hash).await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("lighthouse.png");
    std::fs::write(&file, picture(ImageFormat::Png, 900, 600, 8)).unwrap();
    let profile = tempfile::TempDir::new().unwrap();
    let browser = crate::dashboard::chromium(port, &profile).await;
    let run = async {
        crate::dashboard::sign_in(&browser, &app, "/admin/posts/new/").await?;
        browser
            .wait()
            .for_element(Locator::Id("image-upload"))
            .await?;
        browser
            .find(Locator::Id("title"))
            .await?
            .send_keys("By the sea")
            .await?;
        browser
            .find(Locator::Id("body_markdown"))
            .await?
            .send_keys("A walk to the lighthouse.")
            .await?;
        browser
            .find(Locator::Id("image-upload"))
            .await?
            .send_keys(&file.display().to_string())
            .await?;
        // The script uploads it and inserts its Markdown into the text.
        let mut inserted = String::new();
        for _ in 0..100 {
            inserted = browser
                .find(Locator::Id("body_markdown"))
                .await?
                .prop("value")
                .await?
                .unwrap_or_default();
            if inserted.contains("![lighthouse](/media/") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            inserted.starts_with("A walk to the lighthouse.")
                && inserted.contains("![lighthouse](/media/"),
            "{inserted}"
        );
        let status = browser
            .find(Locator::Id("image-status"))
            .await?
            .text()
            .await?;
        assert!(
            status.contains("Uploaded lighthouse.png (900×600)"),
            "{status}"
        );
        browser
            .find(Locator::Css("input[name=published]"))
            .await?
            .click()
            .await?;
        browser
            .find(Locator::Css("form.post-editor button[type=submit]"))
            .await?
            .click()
            .await?;
        browser
            .wait()
            .for_element(Locator::Css("a[href='/admin/posts/new/']"))
            .await?;
        browser.goto(&app.url("/blog/by-the-sea/")).await?;
        browser
            .wait()
            .for_element(Locator::Css(".post-body img[alt=lighthouse]"))
            .await?;
        // Loaded and decoded by the browser, not a broken image.
        let mut loaded = false;
        for _ in 0..50 {
            let width = browser
                .execute(
                    "return document.querySelector('.post-body img[alt=lighthouse]').naturalWidth",
                    vec![],
                )
                .await?;
            if width.as_u64().is_some_and(|w| w > 0) {
                loaded = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(loaded, "the image loaded");
        Ok::<_, fantoccini::error::CmdError>(())
    };
    let result = run.await;
    let _ = browser.close().await;
    result.expect("uploading an image works in a browser");
}
