#!/usr/bin/env python3
"""Where a server's CPU goes: `perf record` on each server while the C load generator of
../shared/bench runs against it, kernel and user symbols grouped by what they do, one
column per server, and the CPU per connection (greeting) or per MB (echo) from perf's own
sample totals.

    bench/perf_shares.py                  # greeting: C greet_epoll, socketkit epoll, io_uring
    bench/perf_shares.py --mode echo      # echo 16 x 4 KiB: C echo_epoll, the same two
    bench/perf_shares.py --seconds 6 --top 15

Needs perf and the binaries of ../shared/bench/build.sh (in $BENCH_BUILD, default
/tmp/bench-build). A VM samples on the CPU clock, so time spent with interrupts off lands
on the point that turns them on (`_raw_spin_unlock_irqrestore`): counted with scheduling.
"""
import argparse, json, os, re, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("BENCH_BUILD", "/tmp/bench-build")

# First match wins; the order matters where patterns overlap.
GROUPS = [
    ("io_uring", r"^(__)?io_|io_uring|^io_wq|^tctx_|^llist_"),
    ("system call entry and exit, epoll",
     r"^(do_syscall_64|entry_SYSCALL|syscall_exit|x64_sys_call|__x64_sys_|syscall_return|"
     r"ep_|do_epoll|__ep_|epoll_|fdget|__fget_light)"),
    ("scheduling, wake-ups, interrupt-enable points",
     r"(schedule|finish_task_switch|try_to_wake_up|wake_up|ttwu_|enqueue_|dequeue_|"
     r"pick_next|update_curr|update_load|cond_resched|psi_|select_task_rq|sched_|"
     r"set_next_entity|_raw_spin_unlock_irq|pv_queued_spin|native_queued_spin|"
     r"switch_mm|__switch_to|prepare_task_switch|hrtimer|read_tsc|ktime_get|autoremove_wake)"),
    ("socket, file and memory allocation and freeing",
     r"(kmem_cache|slab|kfree|kmalloc|alloc_|memcg|obj_cgroup|objcg|inode|dentry|dput|"
     r"__fput|fput|fget|_fd|fd_install|file_close|d_alloc|iput|rcu|sock_alloc|sk_alloc|"
     r"sk_prot_alloc|__sk_destruct|sk_free|__put_page|free_|page_frag|folio)"),
    ("TCP/IP and loopback",
     r"^(__)?(tcp|ip|inet|sk_|sock|skb|dev_|netif|net_|napi|loopback|bbr|dst|kfree_skb|"
     r"csum|lock_sock|release_sock|__sys_|_copy_|copy_|validate_xmit|__check_object|"
     r"process_backlog|inet6|nf_|__kfree_skb|eth_|__netif|__dev|reqsk|secure_|"
     r"__inet|__tcp|__ip|__sk|__skb|__sock|__napi|__local_bh|do_softirq|handle_softirqs|"
     r"__build_skb|neigh|raw_|udp|fib|rt_|__release_sock|sys_)|^_raw_spin_lock_bh"),
]
USER = "user space"
OTHER = "other kernel"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group(symbol, user):
    if user:
        return USER
    for name, pattern in GROUPS:
        if re.search(pattern, symbol):
            return name
    return OTHER


def profile(name, argv, mode, seconds, top):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = tempfile.mktemp(suffix=".perf")
    try:
        time.sleep(0.5)
        load = ["conn", "-c", "64", "--expect-hex", "e4bda0e5a5bd"] if mode == "greeting" \
            else ["echo", "-c", "16", "-b", "4096"]
        gen = subprocess.Popen([os.path.join(BUILD, "loadgen"), *load, "--port", str(port),
                                "-d", str(seconds + 3), "--max-err-pct", "100"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        subprocess.run(["perf", "record", "-F", "2999", "-p", str(server.pid), "-o", data,
                        "--", "sleep", str(seconds)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        result = json.loads(gen.communicate()[0])
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort",
                                 "dso,sym", "-g", "none", "--stdio"],
                                capture_output=True, text=True, check=True).stdout
    finally:
        server.kill()
        server.wait()
    total_ns = float(re.search(r"Event count \(approx\.\): (\d+)", report).group(1))
    shares, symbols = {}, []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+)", line)
        if not m:
            continue
        pct, kind, sym = float(m.group(1)), m.group(3), m.group(4).strip()
        g = group(sym, kind == ".")
        shares[g] = shares.get(g, 0) + pct
        symbols.append((pct, sym, g))
    os.unlink(data)
    if mode == "greeting":
        unit, per = "µs/conn", total_ns / 1e3 / (result["conn_per_s"] * seconds)
    else:
        unit, per = "µs/MB", total_ns / 1e3 / (result["mb_per_s"] * seconds)
    print(f"{name}: {per:.2f} {unit} of server CPU; top symbols:", file=sys.stderr)
    for pct, sym, g in symbols[:top]:
        print(f"  {pct:5.2f}%  {sym[:60]:60} {g}", file=sys.stderr)
    others = [(pct, sym) for pct, sym, g in symbols if g == OTHER][:top]
    print("  largest in 'other kernel': " + ", ".join(f"{sym} {pct:.2f}%" for pct, sym in others),
          file=sys.stderr)
    return shares, per, unit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["greeting", "echo"], default="greeting")
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--socketkit", default=os.path.join(ROOT, "target/release/socketkit"))
    args = ap.parse_args()
    addr = "127.0.0.1:{port}"
    service = [] if args.mode == "greeting" else ["echo"]
    servers = [
        ("C " + ("greet_epoll" if args.mode == "greeting" else "echo_epoll"),
         [os.path.join(BUILD, "greet_epoll" if args.mode == "greeting" else "echo_epoll"),
          "--listen", addr]),
        ("socketkit epoll", [args.socketkit, "serve", *service, "-q", "--workers", "1",
                             "--io-engine", "epoll", "-l", addr]),
        ("socketkit io_uring", [args.socketkit, "serve", *service, "-q", "--workers", "1",
                                "--io-engine", "io_uring", "-l", addr]),
    ]
    columns = [(name, *profile(name, argv, args.mode, args.seconds, args.top))
               for name, argv in servers]
    names = [g for g, _ in GROUPS] + [USER, OTHER]
    print("| share of the server's CPU | " + " | ".join(c[0] for c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for g in names:
        print(f"| {g} | " + " | ".join(f"{c[1].get(g, 0):.0f} %" for c in columns) + " |")
    print(f"| CPU ({columns[0][3]}, perf's samples) | "
          + " | ".join(f"{c[2]:.2f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
