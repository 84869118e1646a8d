#!/usr/bin/env bash
# Remakes bench/symbol-order.txt, the order build.rs asks the linker for: every function
# a release server runs while it starts, warms and serves the load benchmark's targets
# (memory:// and, when it answers, Redis), hottest first.
#
# It runs the server under valgrind's callgrind, which sees every function executed,
# not a sample. Symbol names carry a hash of their crate's build settings, and the
# binary `cargo bench` builds differs from `cargo build --release`'s (dev-dependencies
# turn on more features, e.g. tokio's "process"), so both are profiled and the list
# holds the names of both. Run it after changes to dependencies, features or the
# toolchain, or to the serving path; a stale list only costs memory (see build.rs).
# Needs valgrind, wrk and curl.
#   cargo make symbol-order        (REDIS_URL=redis://host:port for a Redis elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind wrk curl; do
  command -v "$tool" >/dev/null || { echo "symbol-order: $tool is not installed" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
built="${CARGO_TARGET_DIR:-target}/production/folio"
cargo build --profile production --bin folio
cp "$built" "$work/folio.release"
cargo bench --bench load --no-run
cp "${CARGO_TARGET_DIR:-target}/release/folio" "$work/folio.bench"
db="sqlite://$work/profile.db"
DATABASE_URL="$db" DATA_DIR="$work" CACHE_URL=none RUST_LOG=warn "$work/folio.bench" seed --posts 200 >/dev/null

redis="${REDIS_URL:-redis://127.0.0.1:6379}"
backends=("memory://")
if command -v redis-cli >/dev/null && redis-cli -u "$redis" ping 2>/dev/null | grep -q PONG; then
  backends+=("$redis")
fi

n=0
for bin in "$work/folio.release" "$work/folio.bench"; do
for cache in "${backends[@]}"; do
  port=$((20000 + RANDOM % 20000))
  out="$work/callgrind.$n"
  DATABASE_URL="$db" DATA_DIR="$work" BIND="127.0.0.1:$port" RUST_LOG=warn \
    SEED_ON_EMPTY=false SECRET_KEY=symbol-order-secret-key-long-enough-0123456789 \
    CACHE_URL="$cache" CACHE_KEY_PREFIX="symorder$$-$n" \
    valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$out" \
    "$bin" serve >"$work/server.$n.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -fso /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  post=$(curl -fs "http://127.0.0.1:$port/api/posts/" | grep -o '"slug":"[^"]*"' | head -1 | cut -d'"' -f4)
  for path in / /blog/ "/blog/$post/" /api/posts/; do
    url="http://127.0.0.1:$port$path"
    curl -fsI -o /dev/null "$url"
    wrk -t1 -c32 -d2s "$url" >/dev/null
    etag=$(curl -fsI "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}')
    wrk -t1 -c32 -d1s -H "If-None-Match: $etag" "$url" >/dev/null
  done
  kill -TERM "$pid"
  wait "$pid" || true
  n=$((n + 1))
done
done

# Self cost per function (callgrind's "(id) name" compression resolved), summed over runs.
awk '
function resolve(v,   id, rest) {
  if (match(v, /^\([0-9]+\)/)) {
    id = substr(v, 2, RLENGTH - 2); rest = substr(v, RLENGTH + 2)
    if (rest != "") name[FILENAME, id] = rest
    return name[FILENAME, id]
  }
  return v
}
/^fn=/    { cur = resolve(substr($0, 4)); cost[cur] += 0; next }
/^cfn=/   { cost[resolve(substr($0, 5))] += 0; next }
/^calls=/ { skip = 1; next }
/^[0-9+*-]/ { if (skip) { skip = 0; next } if (cur != "") cost[cur] += $2; next }
END { for (f in cost) if (f != "" && f !~ /^0x/) printf "%d %s\n", cost[f], f }
' "$work"/callgrind.* | sort -k1,1nr -k2 | cut -d' ' -f2- >bench/symbol-order.txt
echo "bench/symbol-order.txt: $(wc -l <bench/symbol-order.txt) functions from ${backends[*]}, both builds"
