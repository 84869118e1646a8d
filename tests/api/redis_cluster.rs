//! The Redis Cluster tests' own clusters (`tests/support/redis_cluster.rs`), and one
//! shared by every test that only needs a cluster.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::helpers::services_required;

#[path = "../support/redis_cluster.rs"]
mod nodes;
pub use nodes::{cli, OwnCluster};

/// A cluster of our own; None (skip) when redis-server or redis-cli is missing, unless
/// services are required.
pub fn own_cluster(masters: usize, replicas: usize) -> Option<OwnCluster> {
    if !OwnCluster::installed() {
        assert!(
            !services_required(),
            "REQUIRE_SERVICES=1 but redis-server or redis-cli is missing"
        );
        crate::helpers::skip(
            "redis-server or redis-cli is missing: the Redis Cluster tests are skipped",
        );
        return None;
    }
    Some(OwnCluster::start(masters, replicas))
}

/// One 3-master cluster for every test of this run that only needs a cluster (each test
/// keeps to its own key prefix). Statics are never dropped, so a watchdog kills the
/// nodes by pid when this test process ends.
pub fn shared_cluster() -> Option<&'static OwnCluster> {
    static SHARED: OnceLock<Option<OwnCluster>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let cluster = own_cluster(3, 0)?;
            let pids: Vec<String> = cluster.pids().iter().map(u32::to_string).collect();
            let watch = format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {}; rm -rf '{}'",
                std::process::id(),
                pids.join(" "),
                cluster.dir().display()
            );
            // Outlives this process by design: it is what stops the nodes then.
            let watchdog = Command::new("sh")
                .args(["-c", &watch])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the watchdog starts");
            std::mem::forget(watchdog);
            Some(cluster)
        })
        .as_ref()
}

pub fn shared_cluster_url() -> Option<String> {
    shared_cluster().map(OwnCluster::url)
}
