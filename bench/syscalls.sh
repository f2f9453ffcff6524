#!/usr/bin/env bash
# System calls per connection (greeting) and per 4 KiB echo block, counted by the kernel's
# raw_syscalls:sys_enter tracepoint (`perf stat -p`) while `socketkit bench` drives a fixed
# number of operations: the C epoll reference, socketkit on epoll, socketkit on io_uring.
#
#   bench/syscalls.sh             # 50,000 connections and 200,000 blocks per server
#   COUNT=20000 bench/syscalls.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=$(cd "$root/../shared/bench" && pwd)
count=${COUNT:-50000}
blocks=${BLOCKS:-200000}
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)"; exit 2; }
(cd "$root" && cargo build --release --quiet)
NO_APT=${NO_APT:-1} "$shared/build.sh" >/dev/null
sk="$root/target/release/socketkit"
build=${BENCH_BUILD:-/tmp/bench-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() { # port
  for _ in $(seq 50); do
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" \
      2>/dev/null && return
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; exit 2
}

# name mode ops port server-command... : prints system calls per operation.
count_one() {
  local name=$1 mode=$2 ops=$3 port=$4; shift 4
  "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_listening "$port"
  local load=(--count "$ops" -c 16)
  [ "$mode" = echo ] && load=(--count "$ops" -c 16 --size 4096)
  # Warm up, so that the count does not include start-up.
  "$sk" bench -q --mode "$mode" -c 16 -d 1s "127.0.0.1:$port" >/dev/null 2>&1 || true
  perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$log" -- \
    "$sk" bench -q --mode "$mode" --warmup 0s "${load[@]}" "127.0.0.1:$port" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local calls; calls=$(awk -F, '/raw_syscalls/ { print $1 }' "$log")
  local unit=connection; [ "$mode" = echo ] && unit="4 KiB block"
  python3 -c "import sys; print(f'{sys.argv[1]:<32} {int(sys.argv[2]) / int(sys.argv[3]):6.2f} system calls per {sys.argv[4]}')" \
    "$name" "$calls" "$ops" "$unit"
}

for mode in greeting echo; do
  ops=$count; [ "$mode" = echo ] && ops=$blocks
  c=greet_epoll; s=(serve); [ "$mode" = echo ] && { c=echo_epoll; s=(serve echo); }
  port=$(free_port)
  count_one "C epoll ($c)" "$mode" "$ops" "$port" "$build/$c" --listen "127.0.0.1:$port"
  for engine in epoll io_uring; do
    port=$(free_port)
    count_one "socketkit --io-engine $engine" "$mode" "$ops" "$port" \
      "$sk" "${s[@]}" -q --workers 1 --io-engine "$engine" -l "127.0.0.1:$port"
  done
done
