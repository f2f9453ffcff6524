#!/usr/bin/env bash
# A TCP relay against the ones users would pick instead: `socketkit forward` beside HAProxy
# (`mode tcp`, one thread) and, with SOCAT=1, socat, in interleaved rounds on one machine.
#
#   bench/relay_peers.sh conn      # a connection per operation: loadgen conn -c 64 through
#                                  # the relay to greet_epoll (conn/s, relay CPU per connection)
#   bench/relay_peers.sh echo      # bulk both ways: loadgen echo, 4 x 64 KiB blocks, 256 KiB
#                                  # window, through the relay to echo_epoll (MB/s, CPU per GB)
#
# ROUNDS (3), DUR (3 s), OTHER_BIN (a second socketkit build, measured beside this one),
# BENCH_BUILD (/tmp/bench-build: ../shared/bench/build.sh's loadgen and C servers).
# Relay CPU is the relay process's user + system time (and its reaped children's: socat
# forks one per connection) over the measured seconds, from /proc/PID/stat.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:?usage: relay_peers.sh conn|echo}
build=${BENCH_BUILD:-/tmp/bench-build}
rounds=${ROUNDS:-3}
dur=${DUR:-3}
sk="$here/../target/release/socketkit"
for tool in "$build/loadgen" "$build/greet_epoll" "$build/echo_epoll" "$sk"; do
  [ -x "$tool" ] || { echo "missing $tool (run ../shared/bench/build.sh and cargo build --release)" >&2; exit 2; }
done
command -v haproxy >/dev/null || { echo "haproxy is not installed" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"   # haproxy sizes its descriptor table from maxconn
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat"; }

up=$(free_port)
case $mode in
  conn) "$build/greet_epoll" --listen "127.0.0.1:$up" >/dev/null 2>&1 & ;;
  echo) "$build/echo_epoll" --listen "127.0.0.1:$up" >/dev/null 2>&1 & ;;
  *) echo "mode is conn or echo" >&2; exit 2 ;;
esac
pids+=($!)
sleep 0.3

haproxy_config() { # port threads
  cat > "$work/haproxy-$1.cfg" <<CFG
global
  nbthread $2
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
listen relay
  bind 127.0.0.1:$1
  server target 127.0.0.1:$up
CFG
  echo "$work/haproxy-$1.cfg"
}

# measure NAME PORT CMD...: starts CMD (listening on PORT), loads it, prints one line.
measure() {
  local name=$1 port=$2; shift 2
  "$@" >/dev/null 2>"$work/$name.log" &
  local relay=$!
  pids+=("$relay")
  sleep 0.5
  local load
  if [ "$mode" = conn ]; then
    load=("$build/loadgen" conn --port "$port" -c 64 -d "$dur" -w 1 --drain 1)
  else
    load=("$build/loadgen" echo --port "$port" -c 4 -b 65536 --window 262144 -d "$dur" -w 1)
  fi
  # The warm-up's second is left out of the CPU, as loadgen leaves it out of its counts.
  (sleep 1; ticks "$relay" > "$work/t0") &
  local result; result=$("${load[@]}" 2>/dev/null | tail -1)
  local t1; t1=$(ticks "$relay")
  kill "$relay" 2>/dev/null; wait "$relay" 2>/dev/null || true
  python3 - "$name" "$mode" "$result" "$(cat "$work/t0")" "$t1" <<'PY'
import json, os, sys
name, mode, result, t0, t1 = sys.argv[1:]
load = json.loads(result)
cpu = (int(t1) - int(t0)) / os.sysconf("SC_CLK_TCK")
if mode == "conn":
    n = load["completed"]
    print(f"{name:22s} {load['conn_per_s']:9.0f} conn/s  relay CPU {cpu * 1e6 / n:6.2f} us/conn  errors {load['errors']['total']}")
else:
    b = load["bytes"]
    print(f"{name:22s} {load['mb_per_s']:9.0f} MB/s    relay CPU {cpu / (b / 1e9):6.3f} s/GB")
PY
}

for round in $(seq 1 "$rounds"); do
  echo "round $round" >&2
  p=$(free_port); measure "socketkit forward" "$p" "$sk" forward -q -l "127.0.0.1:$p" --to "127.0.0.1:$up"
  if [ -n "${OTHER_BIN:-}" ]; then
    p=$(free_port); measure "other build" "$p" "$OTHER_BIN" forward -q -l "127.0.0.1:$p" --to "127.0.0.1:$up"
  fi
  p=$(free_port); measure "socketkit, copy" "$p" env SOCKETKIT_NO_SPLICE=1 "$sk" forward -q -l "127.0.0.1:$p" --to "127.0.0.1:$up"
  p=$(free_port); measure "haproxy (1 thread)" "$p" haproxy -db -f "$(haproxy_config "$p" 1)"
  if [ -n "${SOCAT:-}" ]; then
    p=$(free_port); measure "socat" "$p" socat "TCP-LISTEN:$p,fork,reuseaddr,backlog=1024" "TCP:127.0.0.1:$up"
  fi
done
