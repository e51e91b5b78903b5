#!/usr/bin/env python3
"""Crash safety at scale: run `shoulders serve`, drive signed writes and metered gateway calls
from client threads, and SIGKILL the server at random points, over and over.

After every restart it checks that each write and each metered call the server acknowledged
(HTTP 2xx) is in the log with exactly the acknowledged bytes, that the books are conserved, and
every 10 kills (and at the end) that an export of the whole log verifies from scratch.

Usage: reliability/crash_server.py --shoulders target/debug/shoulders [--kills 100] [--seed 1]
Prints one summary line; exits 1 on any lost acknowledged record or broken check.
"""

import argparse
import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

POEMS = [
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.",
    "Hope is the thing with feathers that perches in the soul, and sings the tune without the words.",
    "Tyger Tyger, burning bright, in the forests of the night; what immortal hand or eye.",
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Harness:
    def __init__(self, shoulders, work):
        self.bin = shoulders
        self.work = work
        self.data = os.path.join(work, "ledger")
        self.acked_writes = {}    # index -> exact record bytes
        self.acked_receipts = {}  # index -> usage id
        self.lock = threading.Lock()

    def sh(self, *args):
        return run([self.bin, *args])

    def setup(self, records):
        w = self.work
        self.vkey = self.sh("init", "--data-dir", self.data, "--operator", "op",
                            "--protocol-fee-bps", "100").strip()
        for who in ("alice", "erin"):
            self.sh("key", "new", "--out", f"{w}/{who}.key")
        def submit(who, kind, body):
            path = f"{w}/body.json"
            with open(path, "w") as f:
                json.dump(body, f)
            self.sh("submit", "--data-dir", self.data, "--key", f"{w}/{who}.key", "--kind", kind,
                    "--body", path)
        submit("alice", "actor.register", {"handle": "alice", "name": "Alice",
                                           "payout_address": "acct:alice"})
        submit("erin", "actor.register", {"handle": "erin", "name": "Erin"})
        submit("alice", "license.define", {"license_id": "alice/l", "name": "L", "terms": {
            "commercial_use": True, "derivatives": "allowed", "attribution_required": True,
            "share_alike": False, "royalty_bps": 0, "data_share_bps": 5000, "currency": "USD",
            "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "2000",
            "registration_fee_micros": "0"}})
        submit("alice", "dataset.create", {"dataset_id": "alice/verse", "name": "Verse",
                                           "access": "open"})
        for i, poem in enumerate(POEMS):
            path = f"{w}/poem{i}.txt"
            with open(path, "w") as f:
                f.write(poem)
            self.sh("contribute", "--data-dir", self.data, "--key", f"{w}/alice.key",
                    "--dataset", "alice/verse", path)
        submit("alice", "model.register", {"model_id": "alice/m", "name": "M",
                                           "datasets": ["alice/verse"], "license_id": "alice/l"})
        self.sh("index", "build", "--data-dir", self.data, "alice/verse")
        self.sh("deposit", "--data-dir", self.data, "--account", "erin",
                "--amount-micros", "1000000000000")
        self.api_key = json.loads(self.sh("apikey", "new", "--data-dir", self.data,
                                          "--actor", "erin"))["api_key"]
        # Signed records for the writer thread, signed ahead (the server's admission window
        # is off for this run, since the records wait while the server is killed and restarted).
        self.pool = []
        body_path = f"{w}/ds.json"
        for i in range(records):
            with open(body_path, "w") as f:
                json.dump({"dataset_id": f"alice/d{i}", "name": f"D{i}", "access": "owner"}, f)
            out = subprocess.run([self.bin, "sign", "--data-dir", self.data, "--key", f"{w}/alice.key", "--kind",
                                  "dataset.create", "--body", body_path, "--id", f"d{i}"],
                                 check=True, capture_output=True).stdout
            self.pool.append(out)

    def start(self):
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0",
             "--metering", "on", "--admission-window-ms", "0",
             # One writer key at full speed: no per-signer write quota.
             "--quota-records", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        text = ""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("shoulders serve exited before listening")
            text += line
            try:
                self.url = json.loads(text)["listening"]
                return
            except json.JSONDecodeError:
                continue

    def request(self, method, path, body=None, headers=None, timeout=5):
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()

    def writer(self, stop):
        while not stop.is_set():
            with self.lock:
                if not self.pool:
                    return
                rec = self.pool[-1]
            try:
                status, body = self.request("POST", "/api/records", rec)
            except Exception:
                return  # the server died: this write was never acknowledged
            if status in (200, 201):
                v = json.loads(body)
                with self.lock:
                    self.acked_writes[v["index"]] = rec
                    self.pool.pop()
            time.sleep(0.004)  # leave the pool enough records for every kill

    def caller(self, stop, n):
        i = 0
        while not stop.is_set():
            i += 1
            body = json.dumps({"model": "alice/m", "prompt": "Shall I", "max_tokens": 40,
                               "seed": i}).encode()
            try:
                status, out = self.request("POST", "/v1/completions", body, {
                    "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
            except Exception:
                return
            receipt = json.loads(out)["shoulders"]["receipt"]
            with self.lock:
                self.acked_receipts[receipt["index"]] = receipt["usage_id"]

    def check_live(self, fresh_writes, fresh_receipts, rng):
        sample = list(self.acked_writes.items())
        checks = list(fresh_writes.items()) + rng.sample(sample, min(20, len(sample)))
        for index, rec in checks:
            _, got = self.request("GET", f"/api/records/{index}")
            if got != rec:
                raise AssertionError(f"acknowledged record {index} lost or changed")
        for index, usage_id in fresh_receipts.items():
            _, got = self.request("GET", f"/api/records/{index}")
            if json.loads(got)["body"]["usage_id"] != usage_id:
                raise AssertionError(f"acknowledged receipt {index} lost")
        _, accounts = self.request("GET", "/api/accounts")
        if not json.loads(accounts)["conserved"]:
            raise AssertionError("balances are not conserved")

    def verify_export(self):
        out = f"{self.work}/export.txt"
        self.sh("export", "--data-dir", self.data, "--out", out)
        report = json.loads(self.sh("verify", out, "--key", self.vkey))
        with open(out, "rb") as f:
            lines = f.read().split(b"\n")
        for index, rec in self.acked_writes.items():
            if base64.b64decode(lines[1 + index]) != rec:
                raise AssertionError(f"acknowledged record {index} not in the export")
        return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoulders", required=True)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        h = Harness(os.path.abspath(args.shoulders), work)
        h.setup(records=args.kills * 100)
        h.start()
        kills = 0
        while kills < args.kills:
            before_w, before_r = dict(h.acked_writes), dict(h.acked_receipts)
            stop = threading.Event()
            threads = [threading.Thread(target=h.writer, args=(stop,)),
                       threading.Thread(target=h.caller, args=(stop, kills))]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.6))
            h.proc.send_signal(signal.SIGKILL)
            h.proc.wait()
            kills += 1
            stop.set()
            for t in threads:
                t.join()
            h.start()
            fresh_w = {k: v for k, v in h.acked_writes.items() if k not in before_w}
            fresh_r = {k: v for k, v in h.acked_receipts.items() if k not in before_r}
            h.check_live(fresh_w, fresh_r, rng)
            if kills % 10 == 0 or kills == args.kills:
                h.proc.send_signal(signal.SIGTERM)
                h.proc.wait(timeout=60)
                h.verify_export()
                h.start()
        h.proc.send_signal(signal.SIGTERM)
        h.proc.wait(timeout=60)
        report = h.verify_export()
    print(f"crash: {kills} SIGKILLs survived; {len(h.acked_writes)} acknowledged writes and "
          f"{len(h.acked_receipts)} acknowledged metered calls, 0 lost; books conserved after "
          f"every restart; export of {report['tree_size']} records verifies; "
          f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"CRASH HARNESS FAILED: {e}", file=sys.stderr)
        sys.exit(1)
