#!/usr/bin/env bash
# Two socketkit configurations against each other, in the same run, rounds interleaved
# (../shared/bench/measure.sh with one as --cmd and the other as --limit-cmd). Each line is
# a ratio "configuration / baseline": 1.00 means no cost.
#
#   bench/pairs.sh access            # greeting: 100,000 deny rules vs none
#   bench/pairs.sh metrics           # greeting and echo: --metrics on vs off
#   bench/pairs.sh before OLD_BINARY # greeting and echo: this build vs another binary
#   ROUNDS=5 DURATION=3 bench/pairs.sh access
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=$(cd "$root/../shared/bench" && pwd)
out=${OUT:-/tmp/socketkit-pairs}
rounds=${ROUNDS:-5}
duration=${DURATION:-3}
mkdir -p "$out"
(cd "$root" && cargo build --release --quiet)
NO_APT=${NO_APT:-1} "$shared/build.sh" >/dev/null
export NO_BUILD=1
sk="$root/target/release/socketkit"
# ENGINE=epoll|io_uring runs both servers of each pair on that engine (default: auto).
engine=${ENGINE:+--io-engine $ENGINE}

pair() { # name mode target-cmd baseline-cmd
  local name=$1 mode=$2 target=$3 baseline=$4
  "$shared/measure.sh" --mode "$mode" --rounds "$rounds" --duration "$duration" --name "$name" \
    --idle 0 --cmd "$target" --limit-cmd "$baseline" --json-out "$out/$name.json" \
    >/dev/null 2>"$out/$name.log" || true
  python3 - "$out/$name.json" "$name" "$mode" <<'PY'
import json, sys
path, name, mode = sys.argv[1:]
try:
    d = json.load(open(path))
except (OSError, ValueError):
    print(f"{name}: no result (see {path[:-5]}.log)"); sys.exit()
if mode == "greeting":
    r, t, l = d["conn"]["ratio"], d["conn"]["target"], d["conn"]["limit"]
    print(f"{name}: conn/s {r['conn_per_s']}x ({t['conn_per_s']['median']:.0f} vs {l['conn_per_s']['median']:.0f}), "
          f"server CPU/conn {r['server_cpu_us_per_conn']}x, p99 {r['p99_us']}x")
else:
    r, t, l = d["echo"]["ratio"], d["echo"]["target"], d["echo"]["limit"]
    print(f"{name}: MB/s {r['mb_per_s']}x ({t['mb_per_s']['median']:.0f} vs {l['mb_per_s']['median']:.0f}), "
          f"CPU/GB {r['server_cpu_s_per_gb']}x")
PY
}

case "${1:-access}" in
  access)
    rules="$out/deny-100k.txt"
    # 100,000 single hosts spread over 10.0.0.0/8, plus networks of other lengths: the
    # lookup probes one hash set per distinct length, whatever the count.
    python3 - "$rules" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    f.write("# 100,000 denied hosts and a few networks\n")
    for _ in range(100_000):
        f.write(f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}\n")
    for net in ("192.168.0.0/16", "172.16.0.0/12", "203.0.113.0/24", "2001:db8::/32", "fd00::/8"):
        f.write(net + "\n")
PY
    pair access-100k-deny greeting "$sk serve -q --workers 1 $engine --deny-file $rules -l {addr}" \
      "$sk serve -q --workers 1 $engine -l {addr}"
    ;;
  metrics)
    pair metrics-greeting greeting "$sk serve -q --workers 1 $engine --metrics 127.0.0.1:0 -l {addr}" \
      "$sk serve -q --workers 1 $engine -l {addr}"
    pair metrics-echo echo "$sk serve echo -q --workers 1 $engine --metrics 127.0.0.1:0 -l {addr}" \
      "$sk serve echo -q --workers 1 $engine -l {addr}"
    ;;
  before)
    old=${2:?usage: bench/pairs.sh before OLD_BINARY}
    pair after-vs-before-greeting greeting "$sk serve -q --workers 1 $engine -l {addr}" \
      "$old serve -q --workers 1 $engine -l {addr}"
    pair after-vs-before-echo echo "$sk serve echo -q --workers 1 $engine -l {addr}" \
      "$old serve echo -q --workers 1 $engine -l {addr}"
    ;;
  *) echo "usage: bench/pairs.sh access|metrics|before OLD_BINARY" >&2; exit 2 ;;
esac
