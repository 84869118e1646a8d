//! Content: the schema, the models and the repository (the one read/write path).
//! Seeding lives here too because it writes through the repository like any other caller.

pub mod images;
pub mod invalidation;
pub mod markdown;
pub mod models;
pub mod query_key;
pub mod repository;
pub mod schema;
pub mod search;
pub mod seed;
pub mod views;

pub use repository::Repository;
