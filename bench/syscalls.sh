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

port_of() { # pid: the port the process listens on, from ss
  for _ in $(seq 50); do
    port=$(ss -Hltnp 2>/dev/null | awk -v pid="pid=$1," 'index($0, pid) { n = split($4, a, ":"); print a[n]; exit }')
    [ -n "$port" ] && { echo "$port"; return; }
    sleep 0.1
  done
  echo "no listening port for pid $1" >&2; exit 2
}

# name mode ops server-command... : prints system calls per operation.
count_one() {
  local name=$1 mode=$2 ops=$3; shift 3
  "$@" >/dev/null 2>&1 &
  local pid=$!
  local port; port=$(port_of "$pid")
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
  if [ "$mode" = greeting ]; then c=("$build/greet_epoll" --listen 127.0.0.1:0); s=(serve); else
    c=("$build/echo_epoll" --listen 127.0.0.1:0); s=(serve echo); fi
  count_one "C epoll ($mode)" "$mode" "$ops" "${c[@]}"
  count_one "socketkit --io-engine epoll" "$mode" "$ops" "$sk" "${s[@]}" -q --workers 1 --io-engine epoll -l 127.0.0.1:0
  count_one "socketkit --io-engine io_uring" "$mode" "$ops" "$sk" "${s[@]}" -q --workers 1 --io-engine io_uring -l 127.0.0.1:0
done
