//! `CACHE_URL=none`: every read misses, every write is dropped.

use std::time::Duration;

use super::{Backend, Bytes, Sharing, TaggedRead};
use crate::cache::StoreResult;

pub struct NoCache;

#[async_trait::async_trait]
impl Backend for NoCache {
    fn name(&self) -> &'static str {
        "none"
    }
    async fn get_many(&self, keys: &[&str], _: Sharing) -> StoreResult<Vec<Option<Bytes>>> {
        Ok(vec![None; keys.len()])
    }
    async fn get_many_tagged(&self, keys: &[&str], tag_keys: &[String]) -> StoreResult<TaggedRead> {
        Ok((vec![None; keys.len()], vec![None; tag_keys.len()]))
    }
    async fn set_many(&self, _: &[(&str, Vec<u8>)], _: Duration, _: Sharing) -> StoreResult<()> {
        Ok(())
    }
    async fn delete_many(&self, _: &[&str]) -> StoreResult<u64> {
        Ok(0)
    }
    async fn delete_pattern(&self, _: &str) -> StoreResult<u64> {
        Ok(0)
    }
    async fn incr(&self, _: &str, _: i64, _: Duration) -> StoreResult<i64> {
        Err(crate::cache::StoreError::Off)
    }
    /// No versions: nothing may be stored, and single flight keys on the local epoch.
    async fn create_tag_versions(&self, _: &[String]) -> StoreResult<Vec<Option<u64>>> {
        Err(crate::cache::StoreError::Off)
    }
    async fn bump_tags(&self, _: &[String]) -> StoreResult<()> {
        Ok(())
    }
}
