//! A Varnish of the test's own (Debian's `varnishd` with varnish-modules' xkey), on a
//! free port with its own working directory, running the shipped
//! `deploy/varnish/default.vcl` with its backends replaced by the test's app instances;
//! stopped by pid.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::services_required;

/// The purge secret the tests' apps and VCL share.
pub const PURGE_SECRET: &str = "test-edge-purge-secret-0123";

/// Debian installs it in /usr/sbin, which a user's PATH may not hold.
fn varnishd() -> &'static str {
    ["/usr/sbin/varnishd", "/usr/local/sbin/varnishd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("varnishd")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct OwnVarnish {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    vcl: PathBuf,
}

impl OwnVarnish {
    /// A port for a Varnish started later: the apps must be told it first.
    pub fn reserve() -> Option<u16> {
        if Command::new(varnishd())
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                !services_required(),
                "REQUIRE_SERVICES=1 but varnishd is not installed (apt-get install varnish varnish-modules)"
            );
            crate::helpers::skip("varnishd is not installed: the Varnish tests are skipped");
            return None;
        }
        Some(free_port())
    }

    /// Starts Varnish on `port` in front of the apps listening on `backends`.
    pub async fn start(port: u16, backends: &[u16]) -> OwnVarnish {
        let shipped = include_str!("../../deploy/varnish/default.vcl");
        let (head, rest) = shipped
            .split_once("# BEGIN backends")
            .expect("the VCL marks its backends");
        let (_, tail) = rest
            .split_once("# END backends")
            .expect("the VCL marks its backends' end");
        let mut block = String::from(
            "import directors;\nprobe folio_health { .url = \"/healthz\"; .interval = 200ms; .timeout = 1s; .window = 3; .threshold = 2; }\n",
        );
        for (i, p) in backends.iter().enumerate() {
            block.push_str(&format!(
                "backend app{i} {{ .host = \"127.0.0.1\"; .port = \"{p}\"; .probe = folio_health; }}\n"
            ));
        }
        block.push_str("sub vcl_init { new apps = directors.round_robin();\n");
        for i in 0..backends.len() {
            block.push_str(&format!("apps.add_backend(app{i});\n"));
        }
        block.push_str("}\nsub vcl_recv { set req.backend_hint = apps.backend(); }\n");
        let vcl_text = format!("{head}{block}{tail}").replace(
            "\"CHANGE-ME-EDGE-PURGE-SECRET\"",
            &format!("\"{PURGE_SECRET}\""),
        );
        let dir = tempfile::TempDir::new().unwrap();
        let vcl = dir.path().join("test.vcl");
        std::fs::write(&vcl, vcl_text).unwrap();
        let mut varnish = OwnVarnish {
            child: None,
            port,
            dir,
            vcl,
        };
        varnish.launch().await;
        varnish
    }

    async fn launch(&mut self) {
        let work = self.dir.path().join("work");
        let child = Command::new(varnishd())
            .args([
                "-F",
                "-a",
                &format!("127.0.0.1:{}", self.port),
                "-T",
                &format!("127.0.0.1:{}", free_port()),
                "-f",
                &self.vcl.to_string_lossy(),
                "-n",
                &work.to_string_lossy(),
                "-s",
                "malloc,64m",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("varnishd starts");
        self.child = Some(child);
        // Serving once the backends' probes say healthy: /healthz through it answers.
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(res) = client.get(self.url("/healthz")).send().await {
                if res.status() == 200 {
                    break;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let mut err = String::new();
                use std::io::Read;
                let _ = self
                    .child
                    .as_mut()
                    .unwrap()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                panic!("varnishd exited ({status}): {err}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "Varnish did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The probe window fills: std.healthy is true before the first test request.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// What the apps' EDGE_CACHE_URLS names.
    pub fn edge_url(port: u16) -> String {
        format!("varnish://127.0.0.1:{port}")
    }

    /// Stops it (its cache goes with it) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }
}

impl Drop for OwnVarnish {
    fn drop(&mut self) {
        self.stop();
    }
}
