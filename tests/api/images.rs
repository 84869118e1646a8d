//! Images: uploads of each accepted format and each kind of bad input, content-addressed
//! URLs cached forever, resized copies in `srcset`, covers in link previews, images
//! shared by instances through the database, and an upload in a real browser.

use std::io::Cursor;

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

/// A GIF of `frames` frames of `side`×`side` pixels, each one colour.
fn animation(frames: usize, side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 30);
        for i in 0..frames {
            let frame =
                image::RgbaImage::from_pixel(side, side, image::Rgba([(i % 256) as u8, 0, 0, 255]));
            encoder.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    out
}

/// Text no served byte may contain: the camera's GPS position and a comment.
const PRIVATE: &str = "GPS 38.7223 N 9.1393 W";

/// A `width`×`height` JPEG (a red block at its top-left corner) carrying EXIF — the
/// orientation "rotate 90° clockwise to show" and `PRIVATE` as its description — and a
/// JPEG comment with `PRIVATE`, as a phone's photo does.
fn photo_with_exif(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        match x < width / 4 && y < height / 4 {
            true => image::Rgb([230, 20, 20]),
            false => image::Rgb([20, 20, 230]),
        }
    });
    let mut jpeg = Vec::new();
    img.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    let text = format!("{PRIVATE}\0");
    // TIFF, little-endian: IFD0 with Orientation = 6 and ImageDescription.
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(2u16.to_le_bytes());
    tiff.extend([0x12, 0x01, 3, 0]);
    tiff.extend(1u32.to_le_bytes());
    tiff.extend([6, 0, 0, 0]);
    tiff.extend([0x0E, 0x01, 2, 0]);
    tiff.extend((text.len() as u32).to_le_bytes());
    tiff.extend((8 + 2 + 2 * 12 + 4u32).to_le_bytes());
    tiff.extend(0u32.to_le_bytes());
    tiff.extend(text.as_bytes());
    let app1 = [b"Exif\0\0".as_slice(), &tiff].concat();
    let segment = |marker: u8, data: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend(((data.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(data);
        s
    };
    [
        &jpeg[..2],
        &segment(0xE1, &app1),
        &segment(0xFE, PRIVATE.as_bytes()),
        &jpeg[2..],
    ]
    .concat()
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
            // Stored re-encoded (no metadata): the same picture, pixel for pixel where
            // the format is lossless.
            let served = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
            assert_eq!((served.width(), served.height()), (1000, 500));
            if format == ImageFormat::Png || format == ImageFormat::WebP {
                assert_eq!(served.to_rgb8(), image::load_from_memory(&bytes).unwrap().to_rgb8(), "{ext}: the same pixels");
            }
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
        assert_eq!(image::load_from_memory(&old).unwrap().to_rgb8(), image::load_from_memory(&picture(ImageFormat::Png, 64, 64, 1)).unwrap().to_rgb8());
        // A made-up name is a 404 that leaves nothing behind.
        assert_eq!(anonymous.get(app.url("/media/0123456789abcdef0123456789abcdef.png")).send().await.unwrap().status(), 404);
    }

    async fn photos_are_served_upright_without_their_metadata(app: TestApp) {
        app.sign_in_admin().await;
        let original = photo_with_exif(1200, 800);
        assert!(original.windows(PRIVATE.len()).any(|w| w == PRIVATE.as_bytes()), "the test photo carries it");
        let (status, body) = upload(&app, original, "harbour.jpg").await;
        assert_eq!(status, 200, "{body}");
        // Shown as the camera meant: portrait.
        assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(800), Some(1200)));
        let url = body["url"].as_str().unwrap();
        let stem = url.trim_end_matches(".jpg");
        let anonymous = reqwest::Client::new();
        for path in [url.to_string(), format!("{stem}-480w.jpg")] {
            let bytes = anonymous.get(app.url(&path)).send().await.unwrap().bytes().await.unwrap();
            let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            assert!(!has(PRIVATE.as_bytes()) && !has(b"Exif\0\0"), "{path} carries the photo's metadata");
            let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
            assert!(img.height() > img.width(), "{path} stands upright");
            // Rotated clockwise: the red corner is now at the top right.
            let top_right = img.get_pixel(img.width() - 3, 3);
            assert!(top_right[0] > 150 && top_right[2] < 100, "{path}: {top_right:?} at the top right");
        }
        // Where readers meet it: the post's srcset and link preview.
        let token = app.csrf_for("/admin/posts/new/").await;
        let res = app.client.post(app.url("/admin/posts/new/"))
            .form(&[("title", "Harbour"), ("slug", "harbour"), ("body_markdown", body["markdown"].as_str().unwrap()),
                    ("author_id", "1"), ("published", "on"), ("cover_image", url), ("csrf_token", token.as_str())])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        let (_, page) = app.get_text("/blog/harbour/").await;
        assert!(page.contains(r#"width="800" height="1200""#), "the page gives the upright size");
    }

    async fn bad_uploads_get_a_reason(app: TestApp) {
        let jpeg = picture(ImageFormat::Jpeg, 300, 200, 3);
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            ("an SVG", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(), 400, "Only JPEG, PNG, WebP and GIF"),
            ("a text file", b"hello".to_vec(), 400, "Only JPEG, PNG, WebP and GIF"),
            ("an empty file", Vec::new(), 400, "empty"),
            ("a truncated JPEG", jpeg[..jpeg.len() / 2].to_vec(), 400, "truncated or damaged"),
            ("half a JPEG with its end marker", [&jpeg[..jpeg.len() / 2], &[0xFF, 0xD9]].concat(), 400, "truncated or damaged"),
            ("a GIF of 600 frames", animation(600, 8), 400, "at most 500 frames"),
            ("a GIF of 60 megapixels over its frames", animation(60, 1000), 400, "50 megapixels"),
            ("a decompression bomb", bomb(), 400, "megapixels"),
            ("a file over MAX_IMAGE_BYTES", picture(ImageFormat::Png, 600, 600, 9).into_iter().chain(vec![0; 2_200_000]).collect(), 413, "at most 2048 KB"),
        ];
        // Signed in once the cases are made (the animations take seconds to encode: an
        // idle kept-alive connection would be closed meanwhile).
        app.sign_in_admin().await;
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
    let first = app
        .get(body["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    let res = other.get(body["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap(), first, "the same stored bytes");
}

/// An admin picks a file in the post editor; the image appears in the published post.
#[cfg(feature = "browser-tests")]
#[actix_web::test]
async fn an_admin_uploads_an_image_in_the_editor_in_a_browser() {
    use fantoccini::Locator;
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
