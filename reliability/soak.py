#!/usr/bin/env python3
"""Soak test: `shoulders serve` on a demo ledger under a mixed load at saturation from client
threads on 127.0.0.1 — reads (records, checkpoints, proofs, statements), signed writes and
metered gateway calls — for a bounded time. Reports throughput, p50/p99 latency, errors, and the
server's memory growth (VmRSS at the end of the first tenth of the run vs at the end).

Usage: reliability/soak.py --shoulders target/release/shoulders [--seconds 300] [--threads 8]
"""

import argparse
import json
import os
import random
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoulders", required=True)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    bin_ = os.path.abspath(args.shoulders)
    with tempfile.TemporaryDirectory() as work:
        data = f"{work}/ledger"
        subprocess.run([bin_, "demo", "--no-serve", "--data-dir", data], check=True,
                       stdout=subprocess.DEVNULL)
        key = json.loads(subprocess.run([bin_, "apikey", "new", "--data-dir", data, "--actor",
                                         "erin"], check=True, capture_output=True,
                                        text=True).stdout)["api_key"]
        subprocess.run([bin_, "key", "new", "--out", f"{work}/w.key"], check=True,
                       stdout=subprocess.DEVNULL)
        body = f"{work}/b.json"
        with open(body, "w") as f:
            json.dump({"handle": "soak", "name": "Soak"}, f)
        register = subprocess.run([bin_, "sign", "--data-dir", data, "--key", f"{work}/w.key", "--kind",
                                   "actor.register", "--body", body, "--id", "reg"],
                                  check=True, capture_output=True).stdout
        proc = subprocess.Popen([bin_, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                                 "--admission-window-ms", "0", "--quota-records", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        text = ""
        while True:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("shoulders serve exited before listening")
            text += line
            try:
                url = json.loads(text)["listening"]
                break
            except json.JSONDecodeError:
                continue
        urllib.request.urlopen(urllib.request.Request(url + "/api/records", data=register,
                                                      method="POST"), timeout=10).read()
        # Signed writes, prepared ahead (one new dataset each).
        writes = []
        for i in range(2000):
            with open(body, "w") as f:
                json.dump({"dataset_id": f"soak/d{i}", "name": "D", "access": "owner"}, f)
            writes.append(subprocess.run([bin_, "sign", "--data-dir", data, "--key", f"{work}/w.key", "--kind",
                                          "dataset.create", "--body", body, "--id", f"d{i}"],
                                         check=True, capture_output=True).stdout)
        lock = threading.Lock()
        lat = {"read": [], "write": [], "gateway": []}
        errors = {}
        stop_at = time.time() + args.seconds
        rss = {}

        def one(kind, rng):
            if kind == "read":
                path = rng.choice(["/api/checkpoint", "/api/records/%d" % rng.randrange(200),
                                   "/api/proofs/inclusion?index=%d" % rng.randrange(200),
                                   "/api/statements/alice", "/api/accounts"])
                req = urllib.request.Request(url + path)
            elif kind == "write":
                with lock:
                    if not writes:
                        return None
                    rec = writes.pop()
                req = urllib.request.Request(url + "/api/records", data=rec, method="POST")
            else:
                req = urllib.request.Request(url + "/v1/completions", method="POST", data=json.dumps(
                    {"model": "carol-lab/verse-base", "prompt": "Shall I", "max_tokens": 48,
                     "seed": rng.randrange(1000)}).encode(), headers={
                    "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                ok = True
            except urllib.error.HTTPError as e:
                ok = False
                code = f"HTTP {e.code}"
            except Exception as e:  # connection refused, timeout
                ok = False
                code = type(e).__name__
            dt = time.perf_counter() - t0
            with lock:
                if ok:
                    lat[kind].append(dt)
                else:
                    errors[f"{kind}: {code}"] = errors.get(f"{kind}: {code}", 0) + 1
            return ok

        def worker(seed):
            rng = random.Random(seed)
            while time.time() < stop_at:
                r = rng.random()
                one("read" if r < 0.7 else "write" if r < 0.8 else "gateway", rng)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
        start = time.time()
        for t in threads:
            t.start()
        time.sleep(args.seconds / 10)
        rss["early"] = rss_kib(proc.pid)
        for t in threads:
            t.join()
        rss["end"] = rss_kib(proc.pid)
        elapsed = time.time() - start
        proc.terminate()
        proc.wait(timeout=60)
        total = sum(len(v) for v in lat.values())
        print(f"soak: {elapsed:.0f} s, {args.threads} client threads, {total} requests "
              f"({total / elapsed:.0f}/s), errors {sum(errors.values())} {errors or ''}")
        for kind, v in lat.items():
            if v:
                v.sort()
                print(f"  {kind:<8} {len(v):>7} ok  {len(v) / elapsed:>7.0f}/s  p50 "
                      f"{v[len(v) // 2] * 1000:.2f} ms  p99 {v[int(len(v) * 0.99)] * 1000:.2f} ms")
        print(f"  server RSS {rss['early'] // 1024} MiB after {args.seconds / 10:.0f} s, "
              f"{rss['end'] // 1024} MiB at the end")
        if errors:
            raise SystemExit("soak: requests failed")


if __name__ == "__main__":
    main()
