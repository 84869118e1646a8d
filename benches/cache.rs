//! Cache operation benchmarks on both backends: `cargo make bench-cache` (or
//! `cargo bench --bench cache`). Redis is measured when `BENCH_REDIS_URL` (or
//! `TEST_REDIS_URL`) is set or redis://127.0.0.1:6379 answers. After criterion's
//! timings, the p50/p99 of every operation (from the cache's own latency histograms)
//! are printed per backend.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use folio::cache::CacheUrl;
use folio::cache::{CacheConfig, CacheManager};
use serde::{Deserialize, Serialize};

/// A value shaped like a cached post summary (~300 bytes encoded).
#[derive(Clone, Serialize, Deserialize)]
struct Summary {
    id: i32,
    title: String,
    slug: String,
    excerpt: String,
    tags: Vec<String>,
    views: i64,
}

fn summary(i: i32) -> Summary {
    Summary {
        id: i,
        title: format!("Cache invalidation without tears, part {i}"),
        slug: format!("cache-invalidation-without-tears-{i}"),
        excerpt: "Everyone quotes the joke about the two hard things. Fewer people write down the rules that make invalidation boring.".into(),
        tags: vec!["caching".into(), "redis".into(), "architecture".into()],
        views: 1234,
    }
}

fn backends(rt: &tokio::runtime::Runtime) -> Vec<(&'static str, CacheManager)> {
    // The Redis pool starts a reaper task: it needs a runtime.
    let _runtime = rt.enter();
    let prefix = format!("bench{}", std::process::id());
    let mut out = vec![(
        "memory",
        CacheManager::new(CacheConfig::new(CacheUrl::Memory, &prefix)).unwrap(),
    )];
    let url = std::env::var("BENCH_REDIS_URL")
        .or_else(|_| std::env::var("TEST_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut config = CacheConfig::new(CacheUrl::Redis(url.clone()), &prefix);
    config.timeout = Duration::from_secs(1);
    let redis = CacheManager::new(config).unwrap();
    match rt.block_on(redis.check(Duration::from_secs(5))) {
        Ok(()) => out.push(("redis", redis)),
        Err(e) => eprintln!("redis benchmarks skipped: {url} does not answer ({e})"),
    }
    out
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, cache) in backends(&rt) {
        let mut group = c.benchmark_group(format!("cache/{name}"));
        group.throughput(Throughput::Elements(1));
        let hot = cache.key("posts", ["hot"]);
        rt.block_on(cache.set(&hot, &summary(1), None));
        let cold = cache.key("posts", ["cold"]);
        let keys: Vec<_> = (0..10)
            .map(|i| cache.key("posts", [i.to_string()]))
            .collect();
        let items: Vec<_> = keys.iter().cloned().zip((0..10).map(summary)).collect();
        rt.block_on(cache.set_many(&items, None));

        group.bench_function("get_hit", |b| {
            b.to_async(&rt).iter(|| cache.get::<Summary>(&hot))
        });
        group.bench_function("get_miss", |b| {
            b.to_async(&rt).iter(|| cache.get::<Summary>(&cold))
        });
        let value = summary(2);
        let key = cache.key("posts", ["set"]);
        group.bench_function("set", |b| {
            b.to_async(&rt).iter(|| cache.set(&key, &value, None))
        });
        group.throughput(Throughput::Elements(10));
        group.bench_function("get_many_10", |b| {
            b.to_async(&rt).iter(|| cache.get_many::<Summary>(&keys))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("cache/{name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(10_000));
        let bulk: Vec<_> = (0..10_000)
            .map(|i| (cache.key("bulk", [i.to_string()]), i))
            .collect();
        group.bench_function("delete_pattern_10k", |b| {
            b.iter_batched(
                || rt.block_on(cache.set_many(&bulk, None)),
                |()| {
                    let deleted = rt.block_on(cache.delete_pattern("bulk:*"));
                    assert_eq!(deleted, 10_000);
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();

        let stats = cache.stats();
        println!("\n{name}: latency per operation (from the cache's histograms)");
        for l in &stats.latency {
            println!(
                "  {:<15} n={:<9} p50={:>8.1}µs p99={:>8.1}µs",
                l.op, l.count, l.p50_us, l.p99_us
            );
        }
        println!("  errors: {}", stats.totals.errors);
        rt.block_on(cache.clear());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
