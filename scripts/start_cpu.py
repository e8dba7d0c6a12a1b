#!/usr/bin/env python3
"""Start-up cost of an extension binary, start by start, without the emulator.

Usage: scripts/start_cpu.py BINARY [BINARY ...] [N] [NAME=VALUE ...]

Starts each BINARY N times (default 40), interleaved start by start (so a
machine that speeds up or slows down during the run affects them alike),
against a minimal Extensions API on
loopback that accepts the registration and any subscription and answers the
first /next with SHUTDOWN. As each first /next arrives (its request line
read) it stops the process (SIGSTOP), reads its CPU time (the sum of
/proc/PID/task/*/schedstat, so every thread alive then is counted), its
minor page faults and VmRSS, and lets it go on (SIGCONT): what a process
does after sending /next is not counted, up to the few tens of microseconds
the request line takes to arrive here. Prints, per binary, the medians
and p10/p90 of CPU and of wall time from spawn to /next. NAME=VALUE pairs are added to the
environment (e.g. LAMBDA_OTEL_BRIDGE_RECEIVER=false). Steadier than the
cgroup bench for comparing binaries.
Used for the figures of docs/PERFORMANCE.md ("A peer under the same bench").
"""
import glob
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time


def cpu_ns(pid):
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(open(f).read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def minor_faults(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[7])


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def main():
    args = sys.argv[1:]
    extra = dict(a.split("=", 1) for a in args if "=" in a)
    numbers = [a for a in args if "=" not in a and a.isdigit()]
    binaries = [a for a in args if "=" not in a and not a.isdigit()]
    if not binaries:
        sys.exit(__doc__)
    runs = int(numbers[0]) if numbers else 40
    state = {}
    ready = threading.Event()

    class Api(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, body, headers=()):
            self.send_response(200)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path.endswith("/register"):
                body = {"functionName": "f", "functionVersion": "$LATEST", "handler": "h"}
                self.reply(json.dumps(body).encode(), [("Lambda-Extension-Identifier", "id-1")])
            else:
                self.reply(b"OK")

        def do_PUT(self):
            self.do_POST()

        def parse_request(self):
            # Called as soon as the request line is read, before the headers
            # are parsed: the process is stopped here, so what it does after
            # sending its first /next (the bridge builds its async runtime
            # then) is not counted as before it.
            line = self.raw_requestline
            if line.startswith(b"GET ") and b"/event/next" in line and "next_at" not in state:
                ready.wait(5)
                pid = state["proc"].pid
                os.kill(pid, signal.SIGSTOP)
                state["next_at"] = time.perf_counter()
                state["cpu"] = cpu_ns(pid)
                state["faults"] = minor_faults(pid)
                state["rss"] = rss_kib(pid)
                os.kill(pid, signal.SIGCONT)
            return super().parse_request()

        def do_GET(self):
            if not self.path.endswith("/event/next") or state.get("answered"):
                time.sleep(5)  # a second /next: the process is being stopped
                return
            state["answered"] = True
            deadline = int(time.time() * 1000) + 2000
            body = {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline}
            self.reply(json.dumps(body).encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME="f",
        AWS_REGION="us-east-1",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1",
        **extra,
    )
    results = {b: ([], [], [], []) for b in binaries}
    for _ in range(runs):
        for binary in binaries:
            state.clear()
            ready.clear()
            started = time.perf_counter()
            proc = subprocess.Popen(
                [binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            state["proc"] = proc
            ready.set()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if "cpu" not in state:
                sys.exit(f"{binary} exited (status {proc.returncode}) without calling /next")
            cpu, wall, faults, rss = results[binary]
            cpu.append(state["cpu"] / 1e6)
            wall.append((state["next_at"] - started) * 1e3)
            faults.append(state["faults"])
            rss.append(state["rss"] / 1024)

    def summary(values):
        v = sorted(values)
        return f"median {statistics.median(v):.2f} (p10 {v[len(v) // 10]:.2f}, p90 {v[len(v) * 9 // 10]:.2f})"

    for binary, (cpu, wall, faults, rss) in results.items():
        print(f"{binary}, {runs} starts:")
        print(f"  CPU before the first /next: {summary(cpu)} ms")
        print(f"  spawn → first /next: {summary(wall)} ms")
        print(f"  minor page faults at /next: median {statistics.median(faults):.0f}")
        print(f"  RSS at /next: median {statistics.median(rss):.2f} MiB")


if __name__ == "__main__":
    main()
