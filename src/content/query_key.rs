//! Cache keys derived from a diesel query: a hash of its SQL and bind values (as SQLite
//! would see them: the text only has to be stable, not executable), so the key changes
//! whenever the query does.

use diesel::query_builder::QueryFragment;
use diesel::sqlite::Sqlite;
use sha2::{Digest, Sha256};

use crate::cache::{CacheManager, Key};

pub fn query_key<Q: QueryFragment<Sqlite>>(
    cache: &CacheManager,
    family: &'static str,
    query: &Q,
    suffix: &str,
) -> Key {
    let sql = diesel::debug_query::<Sqlite, _>(query).to_string();
    let digest = Sha256::digest(sql.as_bytes());
    cache.key(family, [suffix, &hex::encode(&digest[..12])])
}
