#!/usr/bin/env bash
# What the PROXY protocol costs the server, measured with socketkit's own load generator
# (`bench --send-proxy`), rounds interleaved: each round runs the plain pair
#   serve -q --workers 1                     ←  bench
# and the PROXY pair
#   serve -q --workers 1 --proxy-protocol --trusted-proxy 127.0.0.0/8 --metrics 127.0.0.1:0
#                                            ←  bench --send-proxy v2
# for greeting and for echo, each on a fresh server. Server CPU is utime+stime of
# /proc/PID/stat just before and just after the bench run. Prints per pair the medians of
# conn/s and server CPU µs per connection (greeting) or MB/s and server CPU s per GB (echo),
# and the ratios PROXY / plain (1.00: no cost).
#
# The greeting runs in open loop (`bench --rate`, 15,000/s unless RATE says otherwise), so
# both servers are offered the same load and the CPU per connection compares like for like.
# In a closed loop (RATE=closed) the header costs the load generator a write per
# connection, so the PROXY pair is offered fewer conn/s, and a server with fewer
# connections per wake-up spends more CPU on each. Pick a rate both servers reach: the
# script warns when either falls more than 2% short of it. Echo always runs closed-loop.
#
# The trusted network is 127.0.0.0/8, not 127.0.0.1/32: towards IPv4 loopback the load
# generator spreads its connections over the sources 127.0.0.1-8.
#
#   bench/proxy_cost.sh
#   ROUNDS=5 DURATION=3 CONNECTIONS=64 bench/proxy_cost.sh
#   ENGINE=epoll bench/proxy_cost.sh    # both servers on one engine (default: each its own)
#   RATE=20000 bench/proxy_cost.sh      # the greeting's offered rate (default 15000/s)
#   RATE=closed bench/proxy_cost.sh     # the greeting in a closed loop (see below)
#   SK=target/debug/socketkit DURATION=1 ROUNDS=1 bench/proxy_cost.sh   # a smoke run
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${OUT:-/tmp/socketkit-proxy-cost}
rounds=${ROUNDS:-5}
duration=${DURATION:-3}
connections=${CONNECTIONS:-64}
mkdir -p "$out"
if [ -z "${SK:-}" ]; then
  (cd "$root" && cargo build --release --quiet)
  sk="$root/target/release/socketkit"
else
  sk=$SK
fi
tick=$(getconf CLK_TCK)
results="$out/rounds.jsonl"
: >"$results"

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

# start_server ARGS…: runs `serve ARGS… -l 127.0.0.1:0`; sets server_pid and server_addr
# from its `listening on` line.
start_server() {
  local log="$out/server.log"
  # Emptied here, not by the child's redirection: that may come after the first look
  # below, which would then read the last server's address.
  : >"$log"
  "$sk" serve "$@" -l 127.0.0.1:0 2>"$log" &
  server_pid=$!
  server_addr=
  for _ in $(seq 100); do
    server_addr=$(grep -o 'listening on tcp:[^ ]*' "$log" | head -1 | cut -d' ' -f3 || true)
    [ -n "$server_addr" ] && return 0
    sleep 0.1
  done
  echo "the server did not start: $(cat "$log")" >&2
  exit 1
}

cpu_ticks() { # utime + stime of PID (fields 14 and 15; socketkit's comm has no spaces)
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# one_run LABEL MODE "SERVER ARGS" "BENCH ARGS": one server, one bench run, one JSON line.
one_run() {
  local label=$1 mode=$2 server_args=$3 bench_args=$4
  # shellcheck disable=SC2086 # the argument lists are split on purpose
  start_server -q --workers 1 ${ENGINE:+--io-engine $ENGINE} $server_args
  local before after report
  before=$(cpu_ticks "$server_pid")
  # shellcheck disable=SC2086
  local rate=
  [ "$mode" = greeting ] && [ "${RATE:-15000}" != closed ] && rate="--rate ${RATE:-15000}"
  # shellcheck disable=SC2086
  report=$("$sk" bench "$server_addr" --mode "$mode" -c "$connections" -d "${duration}s" \
    --warmup 0 --json $rate $bench_args 2>>"$out/bench.log" || true)
  after=$(cpu_ticks "$server_pid")
  stop_server
  python3 - "$label" "$mode" "$before" "$after" "$tick" "$report" >>"$results" <<'PY'
import json, sys
label, mode, before, after, tick, report = sys.argv[1:]
r = json.loads(report) if report.strip() else {}
print(json.dumps({
    "label": label, "mode": mode,
    "cpu_s": (int(after) - int(before)) / int(tick),
    "completed": r.get("completed", 0), "bytes": r.get("bytes", 0),
    "rate_per_s": r.get("rate_per_s", 0), "mb_per_s": r.get("mb_per_s", 0),
    "errors": r.get("errors", {"no report": 1}),
}))
PY
}

proxy_server="--proxy-protocol --trusted-proxy 127.0.0.0/8 --metrics 127.0.0.1:0"
for round in $(seq "$rounds"); do
  for mode in greeting echo; do
    service=greeting
    [ "$mode" = echo ] && service=echo
    # Alternate which goes first, so neither always runs on a warmer machine.
    if [ $((round % 2)) -eq 1 ]; then
      one_run plain "$mode" "$service" ""
      one_run proxy "$mode" "$service $proxy_server" "--send-proxy v2"
    else
      one_run proxy "$mode" "$service $proxy_server" "--send-proxy v2"
      one_run plain "$mode" "$service" ""
    fi
  done
  echo "round $round/$rounds done" >&2
done

python3 - "$results" <<'PY'
import json, os, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def median(label, mode, f):
    values = [f(r) for r in runs if r["label"] == label and r["mode"] == mode and r["completed"]]
    return statistics.median(values) if values else float("nan")
def ratio(a, b):
    return a / b if b else float("nan")
errors = [r for r in runs if r["errors"]]
for r in errors:
    print(f"warning: {r['label']} {r['mode']}: errors {r['errors']}")
offered = os.environ.get("RATE", "15000")
if offered != "closed":
    for r in runs:
        if r["mode"] == "greeting" and r["rate_per_s"] < 0.98 * float(offered):
            print(f"warning: {r['label']} greeting made {r['rate_per_s']:.0f}/s of the "
                  f"{offered}/s offered: lower RATE to compare like for like")
g = {l: (median(l, "greeting", lambda r: r["rate_per_s"]),
         median(l, "greeting", lambda r: 1e6 * r["cpu_s"] / r["completed"])) for l in ("plain", "proxy")}
e = {l: (median(l, "echo", lambda r: r["mb_per_s"]),
         median(l, "echo", lambda r: r["cpu_s"] / (r["bytes"] / 1e9) if r["bytes"] else float("nan")))
     for l in ("plain", "proxy")}
print(f"greeting: conn/s {g['proxy'][0]:.0f} vs {g['plain'][0]:.0f} ({ratio(g['proxy'][0], g['plain'][0]):.2f}x), "
      f"server CPU/conn {g['proxy'][1]:.2f} vs {g['plain'][1]:.2f} us ({ratio(g['proxy'][1], g['plain'][1]):.2f}x)")
print(f"echo: MB/s {e['proxy'][0]:.0f} vs {e['plain'][0]:.0f} ({ratio(e['proxy'][0], e['plain'][0]):.2f}x), "
      f"server CPU/GB {e['proxy'][1]:.2f} vs {e['plain'][1]:.2f} s ({ratio(e['proxy'][1], e['plain'][1]):.2f}x)")
PY
