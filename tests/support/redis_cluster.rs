//! A Redis Cluster of our own for tests and benchmarks: redis-server processes on free
//! ports, joined by `redis-cli --cluster create`, killed by pid. Shared by the test
//! binary and `benches/load.rs` (included with `#[path]`); std, tempfile and rand only.
#![allow(dead_code)] // each includer uses its part

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OwnCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

struct Node {
    child: Option<Child>,
    port: u16,
}

/// A port whose cluster bus port (port + 10000) is free too, so ≤ 55535.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 35_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

/// `redis-cli` against one server on this host; its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl OwnCluster {
    /// Whether redis-server and redis-cli can be run here.
    pub fn installed() -> bool {
        ["redis-server", "redis-cli"].iter().all(|program| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// `masters` masters, each with `replicas` replicas, all slots covered and every
    /// replica in sync. Panics when the cluster can't be built (see `installed`).
    pub fn start(masters: usize, replicas: usize) -> OwnCluster {
        let dir = tempfile::TempDir::new().unwrap();
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                // A replica syncs at once (the default waits 5 s for others to join)
                // and may take over however long its master has been gone.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(dir.path())
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            nodes.push(Node {
                child: Some(child),
                port,
            });
        }
        let cluster = OwnCluster { nodes, dir };
        for node in &cluster.nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server on {} starts",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create");
        cluster.wait_until_ok();
        cluster
    }

    /// Where the nodes keep their files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Every live node sees all slots served, and every replica has its master's data.
    pub fn is_ok(&self) -> bool {
        self.live().all(|n| {
            let replication = cli(n.port, &["info", "replication"]);
            cli(n.port, &["cluster", "info"]).contains("cluster_state:ok")
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
        })
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster reaches cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ports of the live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.live()
            .filter(|n| cli(n.port, &["role"]).starts_with("master"))
            .map(|n| n.port)
            .collect()
    }

    /// How many keys matching `pattern` the node on `port` holds.
    pub fn count_keys(port: u16, pattern: &str) -> usize {
        cli(port, &["--scan", "--pattern", pattern]).lines().count()
    }

    /// SIGKILL to the master serving `key`; returns its port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let any = self.live().next().expect("a live node").port;
        let slot = cli(any, &["cluster", "keyslot", key]).trim().to_string();
        let shards = cli(any, &["cluster", "nodes"]);
        let slot: u32 = slot.parse().expect("a slot number");
        let port = shards
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                if !fields.get(2)?.contains("master") {
                    return None;
                }
                let serves = fields[8..].iter().any(|range| {
                    let mut ends = range
                        .split('-')
                        .map(|n| n.parse::<u32>().unwrap_or(u32::MAX));
                    let start = ends.next().unwrap_or(u32::MAX);
                    let end = ends.next().unwrap_or(start);
                    (start..=end).contains(&slot)
                });
                let address = fields[1].split('@').next()?;
                serves.then(|| address.rsplit_once(':')?.1.parse::<u16>().ok())?
            })
            .expect("a master serves the slot");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the master is ours");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        port
    }

    fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The pids of the live nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.live()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
