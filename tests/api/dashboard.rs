//! The admin cache dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`): after signing in it shows the live numbers, they change after
//! traffic without the page reloading, and its warm button works.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::helpers::{services_required, skip, spawn_app_with, Backend, TestApp};

pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_chromedriver() -> Option<(Driver, u16)> {
    let present = |bin: &str| std::path::Path::new(bin).exists();
    if !present("/usr/bin/chromedriver") || !present("/usr/bin/chromium") {
        assert!(
            !services_required(),
            "REQUIRE_SERVICES=1 but chromium / chromium-driver are not installed (apt-get install chromium chromium-driver)"
        );
        skip("chromium and chromedriver are not installed: the dashboard browser test is skipped");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((Driver(child), port))
}

/// A headless Chromium session through the chromedriver on `port`, with its profile in
/// `profile`.
pub(crate) async fn chromium(port: u16, profile: &tempfile::TempDir) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display())]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

#[actix_web::test]
async fn the_dashboard_shows_live_numbers_and_warms_on_the_in_process_cache() {
    the_dashboard_shows_live_numbers_and_warms(&[]).await
}

#[actix_web::test]
async fn the_dashboard_shows_live_numbers_and_warms_on_redis() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    the_dashboard_shows_live_numbers_and_warms(&[
        ("CACHE_URL", &url),
        ("CACHE_KEY_PREFIX", &prefix),
    ])
    .await
}

/// The text of each cell of the first row of a table body, read in one go (the
/// dashboard's script rebuilds its rows on every refresh).
pub(crate) async fn first_row(
    browser: &fantoccini::Client,
    body_id: &str,
) -> Result<Vec<String>, fantoccini::error::CmdError> {
    let script = format!(
        "return Array.from(document.querySelectorAll('#{body_id} tr:first-child td')).map(td => td.textContent);"
    );
    let cells = browser.execute(&script, vec![]).await?;
    Ok(serde_json::from_value(cells).unwrap_or_default())
}

/// Signs `ada` (password `correct-horse-battery`) in as a person would, then goes to
/// `next`.
pub(crate) async fn sign_in(
    browser: &fantoccini::Client,
    app: &TestApp,
    next: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser
        .goto(&app.url(&format!("/admin/login/?next={next}")))
        .await?;
    browser
        .find(Locator::Css("input[name=username]"))
        .await?
        .send_keys("ada")
        .await?;
    browser
        .find(Locator::Css("input[name=password]"))
        .await?
        .send_keys("correct-horse-battery")
        .await?;
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await
}

async fn the_dashboard_shows_live_numbers_and_warms(extra: &[(&str, &str)]) {
    let Some((_driver, port)) = start_chromedriver() else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, extra).await.unwrap();
    let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
    app.state.repo.upsert_admin("ada", &hash).await.unwrap();
    let profile = tempfile::TempDir::new().unwrap();
    let browser = chromium(port, &profile).await;
    let run = async {
        sign_in(&browser, &app, "/admin/").await?;
        browser
            .wait()
            .for_element(Locator::Css("a[href='/admin/cache/']"))
            .await?;
        browser.goto(&app.url("/admin/cache/?refresh=500")).await?;
        let text = |id: &'static str| {
            let browser = &browser;
            async move { browser.find(Locator::Id(id)).await?.text().await }
        };
        // The script has run once (the family table is filled in by it).
        browser
            .wait()
            .for_element(Locator::Css("#families tr"))
            .await?;
        assert_eq!(text("backend").await?, app.state.cache.backend_name());
        let before: u64 = text("lookups").await?.parse().unwrap();
        browser
            .execute("window.__still_here = true;", vec![])
            .await?;
        for _ in 0..20 {
            app.get("/about/").await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now: u64 = text("lookups").await?.parse().unwrap();
            if now >= before + 20 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the numbers follow the traffic: {before} → {now}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let same_page = browser
            .execute("return window.__still_here === true;", vec![])
            .await?;
        assert_eq!(
            same_page,
            serde_json::json!(true),
            "refreshed without reloading"
        );
        assert!(text("hit-ratio").await?.ends_with('%'));
        // The warm button.
        browser
            .find(Locator::Id("warm-button"))
            .await?
            .click()
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = text("action-status").await?;
            if let Some(rest) = status.strip_prefix("warmed ") {
                let warmed: u64 = rest.split(',').next().unwrap().parse().unwrap();
                assert!(warmed > 5, "{status}");
                break;
            }
            assert!(
                !status.starts_with("refused") && !status.starts_with("failed"),
                "{status}"
            );
            assert!(
                Instant::now() < deadline,
                "the warm button answers: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, fantoccini::error::CmdError>(())
    };
    let result = run.await;
    let _ = browser.close().await;
    app.state.cache.clear().await;
    app.state.cache.reset_site_stats().await;
    result.expect("the dashboard works in a browser");
}
