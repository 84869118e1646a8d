//! What a warming is asked (`WarmOptions`) and what it answers (`WarmReport`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which part of the site to warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WarmType {
    #[default]
    All,
    /// Home, about, tools, feed, sitemap.
    Main,
    /// `/blog/…`.
    Blog,
    /// `/api/…`.
    Api,
    /// The most searched queries lately (`/search/`, `/api/search/`).
    Search,
}

impl WarmType {
    pub(super) fn of(path: &str) -> WarmType {
        if path.starts_with("/search/") || path.starts_with("/api/search/") {
            WarmType::Search
        } else if path.starts_with("/api/") {
            WarmType::Api
        } else if path.starts_with("/blog/") {
            WarmType::Blog
        } else {
            WarmType::Main
        }
    }
    pub(super) fn name(self) -> &'static str {
        match self {
            WarmType::All => "all",
            WarmType::Main => "main",
            WarmType::Blog => "blog",
            WarmType::Api => "api",
            WarmType::Search => "search",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmOptions {
    #[serde(rename = "type", default)]
    pub kind: WarmType,
    #[serde(default)]
    pub force: bool,
    /// Stop after this long (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Warm priorities 1..=this (1: the critical path only).
    #[serde(default = "default_priority")]
    pub max_priority: u8,
}

fn default_timeout() -> u64 {
    120
}
fn default_priority() -> u8 {
    4
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions {
            kind: WarmType::All,
            force: false,
            timeout_secs: default_timeout(),
            max_priority: default_priority(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub warmed: u64,
    /// Already warm (served from the cache).
    pub skipped: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarmReport {
    /// Per type (`main`, `blog`, `api`) and per priority (`p1`…).
    pub by_type: BTreeMap<String, Counts>,
    pub by_priority: BTreeMap<String, Counts>,
    pub failures: Vec<Failure>,
    /// Why it stopped before the end, if it did.
    pub stopped: Option<String>,
    pub items: u64,
    pub duration_ms: u64,
}

impl WarmReport {
    pub fn totals(&self) -> Counts {
        self.by_type.values().fold(Counts::default(), |mut t, c| {
            t.warmed += c.warmed;
            t.skipped += c.skipped;
            t.failed += c.failed;
            t
        })
    }
}
