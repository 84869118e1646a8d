//! Folio: a portfolio and blog whose caching system is the product.
//!
//! Layout: `config` (environment), `db` (both database backends), `content` (schema,
//! models, the repository that is the one write path, seeding), `web` (pages, API,
//! errors), `cli` (subcommands), `startup` (building and running the server).

pub mod cache;
pub mod cli;
pub mod config;
pub mod content;
pub mod db;
pub mod edge;
pub mod startup;
pub mod telemetry;
pub mod timing;
pub mod web;
