#!/usr/bin/env bash
# socketkit against the C epoll references of ../shared/bench, in the same run, rounds
# interleaved (measure.sh), and `socketkit bench` against the C load generator. Prints one
# line of ratios per test and leaves the raw JSON in $OUT (default /tmp/socketkit-compare).
#
#   bench/compare.sh                 # ~5 minutes
#   ROUNDS=5 DURATION=3 bench/compare.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=$(cd "$root/../shared/bench" && pwd)
out=${OUT:-/tmp/socketkit-compare}
rounds=${ROUNDS:-3}
duration=${DURATION:-3}
mkdir -p "$out"

(cd "$root" && cargo build --release --quiet)
NO_APT=${NO_APT:-1} "$shared/build.sh" >/dev/null
sk="$root/target/release/socketkit"
build=${BENCH_BUILD:-/tmp/bench-build}
export NO_BUILD=1

measure() { # name mode json-out args...
  local name=$1 mode=$2 json=$3; shift 3
  "$shared/measure.sh" --mode "$mode" --rounds "$rounds" --duration "$duration" --name "$name" \
    --json-out "$json" "$@" >/dev/null 2>"$out/$name.log" || true
}

measure greeting-w1 greeting "$out/greeting-w1.json" --cmd "$sk serve -q --workers 1 -l {addr}"
measure greeting-w2 greeting "$out/greeting-w2.json" --cmd "$sk serve -q --workers 2 -l {addr}" \
  --limit-cmd "$build/greet_epoll -t 2 --listen {addr}"
measure echo-w1 echo "$out/echo-w1.json" --cmd "$sk serve echo -q --workers 1 -l {addr}"
python3 "$here/driver_bench.py" --rounds "$rounds" --duration "$duration" > "$out/driver.json"

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else None
for name, label in (("greeting-w1.json", "greeting, --workers 1 vs greet_epoll"),
                    ("greeting-w2.json", "greeting, --workers 2 vs greet_epoll -t 2")):
    d = load(name)
    if d:
        r, t = d["conn"]["ratio"], d["conn"]["target"]
        print(f"{label}: conn/s {r['conn_per_s']}x, server CPU/conn {r['server_cpu_us_per_conn']}x, "
              f"p99 {r['p99_us']}x  ({t['conn_per_s']['median']:.0f} conn/s, {t['server_cpu_us_per_conn']['median']} us/conn)")
d = load("echo-w1.json")
if d:
    r, t = d["echo"]["ratio"], d["echo"]["target"]
    print(f"echo, --workers 1 vs echo_epoll: MB/s {r['mb_per_s']}x, CPU/GB {r['server_cpu_s_per_gb']}x "
          f"({t['mb_per_s']['median']:.0f} MB/s, {t['server_cpu_s_per_gb']['median']} s/GB)")
    i = d.get("idle", {}).get("target", {})
    if i:
        print(f"idle, 10k echo connections: {i['pss_kb_per_conn']['median']} KiB/conn PSS, held {i['held_min']}")
d = load("driver.json")
if d:
    r = d["ratio_bench_vs_loadgen"]
    print(f"socketkit bench vs loadgen (greet_epoll): conn/s {r['conn_per_s']}x, client CPU/conn {r['cpu_us_per_conn']}x")
PY
