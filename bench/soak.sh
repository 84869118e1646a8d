#!/usr/bin/env bash
# Soak test: the release server under wrk (512 connections, 60 s, pages and API calls)
# while an admin edit loop writes through the forms, on the in-process cache and on
# Redis; zero errors, zero stale reads and flat memory expected. Results are printed and
# written to bench/results/soak.md. Knobs: SOAK_BACKENDS, SOAK_SECONDS,
# SOAK_CONNECTIONS, BENCH_REDIS_URL (see benches/soak.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
exec cargo bench --bench soak "$@"
