#!/usr/bin/env bash
# Where a cache hit's CPU goes, as users run the server (default log level, stderr to a
# file): a `perf` sample of the release server under wrk on one warm target, its top
# symbols, and the shares of logging, body copies, metrics and synchronous stdout/stderr
# writes. Part of `cargo make bench` (bench/results/perf-hit.md).
#
#   bench/perf-hit.sh [TARGET ...]      e.g. bench/perf-hit.sh / /api/posts/ 304:/
#
# Needs perf, wrk, curl, python3 and a built server (FOLIO=path; default
# target/production/folio, else target/release/folio). Knobs: DUR (seconds, 8),
# CONNECTIONS (32), CACHE_URL (memory://), ACCESS_LOG (on), OUT (a file to write the
# report to as well).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FOLIO:-}
if [ -z "$BIN" ]; then
  for b in target/production/folio target/release/folio; do [ -x "$b" ] && BIN=$b && break; done
fi
[ -n "$BIN" ] || { echo "perf-hit: build the server first (cargo make release)" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf-hit: perf is not installed" >&2; exit 1; }
command -v wrk >/dev/null || { echo "perf-hit: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(/ /api/posts/ "304:/")
D=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$D"' EXIT
DB=sqlite://$D/bench.db
DATABASE_URL=$DB DATA_DIR=$D CACHE_URL=none RUST_LOG=warn "$BIN" seed --posts 200 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -u RUST_LOG DATABASE_URL=$DB DATA_DIR=$D BIND=127.0.0.1:$PORT SEED_ON_EMPTY=false \
  ACCESS_LOG=${ACCESS_LOG:-on} SECRET_KEY=perf-hit-secret-key-that-is-long-enough-0123456789 \
  CACHE_KEY_PREFIX=perf$$ CACHE_URL=${CACHE_URL:-memory://} "$BIN" serve >"$D/stdout" 2>"$D/stderr" &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/" && break; sleep 0.1; done
{
echo "# Where a hit's CPU goes"
echo
echo "\`$BIN\`, CACHE_URL=${CACHE_URL:-memory://}, default log level, ACCESS_LOG=${ACCESS_LOG:-on}, stderr to a file; wrk -t1 -c${CONNECTIONS:-32} for ${DUR:-8} s per target; \`perf record -g\` of the server. $(nproc) cores."
for t in "${TARGETS[@]}"; do
  H=()
  path=$t
  if [[ $t == 304:* ]]; then
    path=${t#304:}
    etag=$(curl -s -D - -o /dev/null "127.0.0.1:$PORT$path" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
    H=(-H "If-None-Match: $etag")
  fi
  for _ in 1 2 3; do curl -s -o /dev/null "127.0.0.1:$PORT$path"; done
  status=$(curl -s -o /dev/null -w '%{http_code} %header{x-cache}' "${H[@]}" "127.0.0.1:$PORT$path")
  perf record -q -F 1999 -g -p $PID -o "$D/perf.data" -- sleep "${DUR:-8}" >/dev/null 2>&1 &
  REC=$!
  wrk -t1 -c"${CONNECTIONS:-32}" -d"${DUR:-8}"s "${H[@]}" "http://127.0.0.1:$PORT$path" >"$D/wrk" 2>&1
  wait $REC || true
  perf report -i "$D/perf.data" --no-children --sort symbol --stdio --percent-limit 0 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | sed -E 's/^ +([0-9.]+)% +\[[.k]\] +/\1\t/' >"$D/symbols"
  echo
  echo "## $t ($status; $(awk '/Requests\/sec/{print $2}' "$D/wrk") req/s)"
  echo
  echo "| share of the server's CPU | % |"
  echo "| --- | ---: |"
  python3 - "$D/symbols" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1]) if "\t" in l]
rows = [(float(p), s) for p, s in rows]
groups = {
    "logging (formatting, the writer, the access line)": r"tracing_subscriber::fmt|tracing_appender|nu_ansi_term|core::fmt|access_log|format_event|JsonVisitor",
    "body copies (memmove/memcpy, to_vec)": r"memmove|memcpy|owned_to_vec|to_vec|extend_from_slice",
    "synchronous stdout/stderr writes": r"Stdout|Stderr|std::io::stdio",
    "metrics (Prometheus histograms, clocks)": r"metrics|histogram|quanta|clock_gettime|Instant::now",
}
for name, pattern in groups.items():
    share = sum(p for p, s in rows if re.search(pattern, s))
    print(f"| {name} | {share:.1f} |")
print()
print("Top symbols:")
print()
print("| % | symbol |")
print("| ---: | --- |")
for p, s in rows[:15]:
    print(f"| {p:.1f} | `{s[:110]}` |")
PY
done
echo
echo "Escape bytes in the server's stderr (a file): $(grep -c $'\x1b' "$D/stderr" || true); its lines: $(wc -l <"$D/stderr")."
} | tee ${OUT:+"$OUT"}
