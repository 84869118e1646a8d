#!/usr/bin/env bash
# Where a release server's memory goes under the load benchmark's pattern, round by round:
# peak RSS (VmHWM), anonymous and file-backed RSS, and what glibc holds against what is in
# use (malloc_stats through gdb, so the server pauses for a moment after each round).
#
#   bench/rss-probe.sh [ROUNDS] [VAR=value ...]   e.g. GLIBC_TUNABLES=glibc.malloc.arena_max=1
#
# Needs a release build (target/release/folio, or FOLIO=path), wrk, curl, gdb, python3.
# Knobs: DUR (seconds per wrk run, 3), GAP (idle seconds after each, 3: the benchmark's
# other servers run then), CACHE_URL (memory://), HOLD=1 leaves the server running.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FOLIO:-target/release/folio}
ROUNDS=${1:-5}
shift || true
D=$(mktemp -d)
DB=sqlite://$D/bench.db
DATABASE_URL=$DB DATA_DIR=$D CACHE_URL=none RUST_LOG=warn "$BIN" seed --posts 200 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env "$@" DATABASE_URL=$DB DATA_DIR=$D BIND=127.0.0.1:$PORT RUST_LOG=warn SEED_ON_EMPTY=false \
  SECRET_KEY=rss-probe-secret-key-that-is-long-enough-0123456789 CACHE_KEY_PREFIX=rss$$ \
  CACHE_URL=${CACHE_URL:-memory://} "$BIN" serve >"$D/log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/" && break; sleep 0.1; done
SLUG=$(curl -s "127.0.0.1:$PORT/api/posts/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["slug"])')
TARGETS="/ /blog/ /blog/$SLUG/ /api/posts/"
for t in $TARGETS; do for _ in 1 2 3; do curl -s -o /dev/null "127.0.0.1:$PORT$t"; done; done
mib() { grep -E "^$1:" "/proc/$PID/status" | awk '{printf "%5.1f", $2/1024}'; }
heap() {
  gdb -p $PID -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1 || { echo "(no gdb)"; return; }
  sleep 0.2 # malloc_stats writes to the server's stderr
  tail -5 "$D/log" | awk '/system bytes/{s=$4} /in use bytes/{u=$5} END{printf "glibc holds %5.1f, in use %5.1f", s/1048576, u/1048576}'
}
report() { echo "$1: peak $(mib VmHWM)  anon $(mib RssAnon)  file $(mib RssFile)  | $(heap)  (MiB)"; }
report "after start"
for r in $(seq "$ROUNDS"); do
  for c in 32 256 512; do
    for t in $TARGETS 304:/ 304:/api/posts/; do
      H=()
      case $t in
        304:*) p=${t#304:}
               e=$(curl -s -D - -o /dev/null "127.0.0.1:$PORT$p" | grep -i '^etag:' | cut -d' ' -f2- | tr -d '\r')
               H=(-H "If-None-Match: $e") ;;
        *) p=$t ;;
      esac
      wrk -t1 -c$c -d${DUR:-3}s "${H[@]}" "http://127.0.0.1:$PORT$p" >/dev/null
      sleep "${GAP:-3}"
    done
  done
  report "round $r"
done
if [ -n "${HOLD:-}" ]; then echo "server pid $PID on port $PORT left running; data in $D"; exit 0; fi
kill $PID; wait $PID 2>/dev/null || true; rm -rf "$D"
