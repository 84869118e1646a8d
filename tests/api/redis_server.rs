//! A redis-server of the test's own, on a free port, that the test may stop, freeze,
//! kill and restart by pid; the shared Redis is never touched.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::services_required;

pub struct OwnRedis {
    child: Child,
    pub port: u16,
}

impl OwnRedis {
    /// None (skip) when redis-server is not installed, unless services are required.
    pub fn start() -> Option<OwnRedis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis::start_on(port)
    }

    /// `DEBUG SLEEP` is allowed: tests use it to make one reply slow.
    pub fn start_on(port: u16) -> Option<OwnRedis> {
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !services_required(),
                    "REQUIRE_SERVICES=1 but redis-server cannot be started: {e}"
                );
                crate::helpers::skip(&format!(
                    "redis-server cannot be started ({e}): the Redis fault tests are skipped"
                ));
                return None;
            }
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(OwnRedis { child, port });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The app (SQLite, fixtures) with this server as its cache.
    pub async fn app(&self) -> crate::helpers::TestApp {
        let url = self.url();
        crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, &[("CACHE_URL", &url)])
            .await
            .expect("app starts")
    }

    fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// SIGSTOP: Redis stalls; connections stay open, nothing answers.
    pub fn freeze(&self) {
        assert!(self.signal("-STOP"), "SIGSTOP redis-server");
    }

    pub fn thaw(&self) {
        assert!(self.signal("-CONT"), "SIGCONT redis-server");
    }

    /// `redis-cli` against this server; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        crate::redis_cluster::cli(self.port, args)
    }

    /// `DEBUG SLEEP`: the server answers nothing for `seconds`, then is fine; returns
    /// once the sleep has begun (join the handle to wait for its end).
    pub async fn busy_for(&self, seconds: f64) -> std::thread::JoinHandle<()> {
        let port = self.port;
        let sleeper = std::thread::spawn(move || {
            let out = crate::redis_cluster::cli(port, &["DEBUG", "SLEEP", &seconds.to_string()]);
            assert_eq!(out.trim(), "OK", "DEBUG SLEEP");
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        sleeper
    }

    /// Kills the server (connections drop at once).
    pub fn stop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
