//! The log as an operator reads it: the server started as users start it, its standard
//! error a file. One access line per request (a cache hit too) with its request id,
//! status and cache outcome; no colour codes in a file; `LOG_FORMAT=json` one object a
//! line; `ACCESS_LOG=off` no access line; nothing on standard output.

use std::time::Duration;

use crate::varnish::free_port;

/// Runs the server with `vars`, sends `/` twice and a made-up path, stops it with
/// SIGTERM (the log thread writes what it holds), and gives its stdout and stderr.
async fn served_log(vars: &[(&str, &str)]) -> (String, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let (out, err) = (dir.path().join("out.log"), dir.path().join("err.log"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("BIND", &bind)
        .env("RUST_LOG", "info")
        .envs(vars.iter().copied())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{bind}");
    let mut ready = false;
    for _ in 0..300 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    for path in ["/", "/", "/made-up/"] {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    (
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}

#[actix_web::test]
async fn a_log_file_gets_plain_lines_one_per_request() {
    let (stdout, stderr) = served_log(&[]).await;
    // Standard output carries the start-up banner only.
    assert!(
        !stdout.contains("INFO") && !stdout.contains("request_id"),
        "{stdout}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape byte in a file: {stderr:?}"
    );
    // Field values as the text format writes them, with or without quotes.
    let access: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(" request request_id="))
        .map(|l| l.replace('"', ""))
        .collect();
    let of = |path: &str| {
        access
            .iter()
            .filter(|l| l.contains(&format!("path={path} ")))
            .count()
    };
    assert_eq!(of("/"), 2, "{stderr}");
    assert_eq!(of("/made-up/"), 1, "{stderr}");
    assert!(access.iter().any(|l| l.contains("cache=HIT")), "{stderr}");
    assert_eq!(
        of("/") + of("/made-up/"),
        3,
        "one line per request: {stderr}"
    );
}

#[actix_web::test]
async fn json_lines_for_log_shippers_and_access_lines_off() {
    let (_, stderr) = served_log(&[("LOG_FORMAT", "json")]).await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"] == "request").collect();
    let of = |path: &str| access.iter().filter(|l| l["path"] == path).count();
    assert_eq!((of("/"), of("/made-up/")), (2, 1), "{stderr}");
    let hit = access.iter().find(|l| l["cache"] == "HIT").expect("a hit");
    assert_eq!(hit["status"], 200);
    assert_eq!(hit["path"], "/");
    assert!(
        hit["request_id"].as_str().is_some_and(|id| id.len() == 36),
        "{hit}"
    );
    assert!(hit["total_ms"].as_f64().is_some(), "{hit}");
    let (_, stderr) = served_log(&[("ACCESS_LOG", "off")]).await;
    assert!(stderr.contains("listening"), "{stderr}");
    // (Events inside a request name its id in their span; the access line is its own.)
    assert!(
        !stderr.contains(" request request_id="),
        "no access line: {stderr}"
    );
}
