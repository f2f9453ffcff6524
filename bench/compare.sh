#!/usr/bin/env bash
# socketkit against the C epoll references of ../shared/bench, in the same run, rounds
# interleaved (measure.sh), on each I/O engine (--io-engine epoll and io_uring), and
# `socketkit bench` against the C load generator. Prints one table of ratios and leaves the
# raw JSON in $OUT (default /tmp/socketkit-compare).
#
#   bench/compare.sh                 # ~10 minutes
#   ROUNDS=5 DURATION=3 bench/compare.sh
#   ENGINES=io_uring bench/compare.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=$(cd "$root/../shared/bench" && pwd)
out=${OUT:-/tmp/socketkit-compare}
rounds=${ROUNDS:-3}
duration=${DURATION:-3}
engines=${ENGINES:-epoll io_uring}
mkdir -p "$out"

(cd "$root" && cargo build --release --quiet)
NO_APT=${NO_APT:-1} "$shared/build.sh" >/dev/null
sk="$root/target/release/socketkit"
build=${BENCH_BUILD:-/tmp/bench-build}
export NO_BUILD=1
cores=$(nproc)

measure() { # name mode args...
  local name=$1 mode=$2; shift 2
  "$shared/measure.sh" --mode "$mode" --rounds "$rounds" --duration "$duration" --name "$name" \
    --json-out "$out/$name.json" "$@" >/dev/null 2>"$out/$name.log" || true
}

for engine in $engines; do
  e="--io-engine $engine"
  measure "greeting-w1-$engine" greeting --cmd "$sk serve -q --workers 1 $e -l {addr}"
  # The default worker count (the cores) against the C server with as many threads.
  measure "greeting-default-$engine" greeting --cmd "$sk serve -q $e -l {addr}" \
    --limit-cmd "$build/greet_epoll -t $cores --listen {addr}"
  measure "echo-w1-$engine" echo --cmd "$sk serve echo -q --workers 1 $e -l {addr}"
done
python3 "$here/driver_bench.py" --rounds "$rounds" --duration "$duration" > "$out/driver.json"

python3 - "$out" "$engines" "$cores" <<'PY'
import json, sys, os
out, engines, cores = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else None
rows = []
for engine in engines:
    for name, label in ((f"greeting-w1-{engine}.json", f"greeting --workers 1 vs greet_epoll"),
                        (f"greeting-default-{engine}.json", f"greeting default workers vs greet_epoll -t {cores}")):
        d = load(name)
        if d:
            r, t = d["conn"]["ratio"], d["conn"]["target"]
            rows.append((engine, label, f"conn/s {r['conn_per_s']}x", f"CPU/conn {r['server_cpu_us_per_conn']}x",
                         f"p99 {r['p99_us']}x",
                         f"{t['conn_per_s']['median']:.0f} conn/s, {t['server_cpu_us_per_conn']['median']} us/conn"))
    # Issue 16: the default worker count must not cost more per connection than one worker.
    one, default = load(f"greeting-w1-{engine}.json"), load(f"greeting-default-{engine}.json")
    if one and default:
        us = lambda d: d["conn"]["target"]["server_cpu_us_per_conn"]["median"]
        rows.append((engine, "greeting default workers vs --workers 1", "",
                     f"CPU/conn {us(default) / us(one):.3f}x", "", "socketkit against itself, same run"))
    d = load(f"echo-w1-{engine}.json")
    if d:
        r, t = d["echo"]["ratio"], d["echo"]["target"]
        rows.append((engine, "echo 16 x 4 KiB --workers 1 vs echo_epoll", f"MB/s {r['mb_per_s']}x",
                     f"CPU/GB {r['server_cpu_s_per_gb']}x", "",
                     f"{t['mb_per_s']['median']:.0f} MB/s, {t['server_cpu_s_per_gb']['median']} s/GB"))
        i = d.get("idle", {}).get("target", {})
        if i:
            rows.append((engine, "idle, 10k echo connections", f"{i['pss_kb_per_conn']['median']} KiB/conn", "",
                         "", f"held {i['held_min']}"))
d = load("driver.json")
if d:
    r = d["ratio_bench_vs_loadgen"]
    rows.append(("-", "socketkit bench vs loadgen (greet_epoll)", f"conn/s {r['conn_per_s']}x",
                 f"client CPU/conn {r['cpu_us_per_conn']}x", "", ""))
widths = [max(len(row[i]) for row in rows) for i in range(6)] if rows else []
for row in rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
PY

# What makes one host's ratios differ from another's (docs/benchmarks.md, 2026-12-04): the
# price of a wake-up (does an idle vCPU poll before it halts?) and of TCP's pacing timer
# (BBR paces every socket on loopback, which has no qdisc).
read_or() { cat "$1" 2>/dev/null || echo "$2"; }
echo "host: $(uname -r), $(nproc) cpus, congestion control $(read_or /proc/sys/net/ipv4/tcp_congestion_control ?)," \
  "cpuidle $(read_or /sys/devices/system/cpu/cpuidle/current_driver none)" \
  "(guest_halt_poll_ns $(read_or /sys/module/haltpoll/parameters/guest_halt_poll_ns -))"
