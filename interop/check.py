#!/usr/bin/env python3
"""Interoperability of the log with an independent implementation (issue 17, part 3).

Builds the Go checker in interop/go from Debian's packaged golang.org/x/mod (sumdb/tlog and
sumdb/note: GOPATH mode, no network), makes a demo ledger, starts three witnesses
(`shoulders witness serve`) and a log server with a 2-of-3 witness policy, and has the Go
checker:

* verify the cosigned checkpoint served at /log/checkpoint (log signature with sumdb/note, and
  the tlog-cosignature/v1 lines with its own verifier), demanding the quorum;
* read the log from /log/ tiles alone: hash tiles authenticated against the root by
  sumdb/tlog's TileHashReader, every entry bundle checked entry by entry against its leaf;
* check shoulders' own inclusion and consistency proofs (from /api/proofs) with sumdb/tlog;
* do the same over a directory written by `shoulders publish`.

Then it checks that the Go checker *fails* on a tampered hash tile, a tampered entry bundle, a
forged cosignature and a policy the checkpoint cannot meet, so the passes above mean something.

Usage: python3 interop/check.py --shoulders target/debug/shoulders
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_for(url, ok=lambda status, body: status == 200, timeout_s=60):
    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        try:
            status, body = get(url)
            if ok(status, body):
                return body
            last = status
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {url}: {last}")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build_checker(out):
    go = shutil.which("go")
    if go is None:
        raise SystemExit("`go` is not installed: apt-get install golang-go golang-golang-x-mod-dev")
    gopath = "/usr/share/gocode"
    if not os.path.isdir(os.path.join(gopath, "src/golang.org/x/mod/sumdb/tlog")):
        raise SystemExit("golang.org/x/mod is not installed: apt-get install golang-golang-x-mod-dev")
    env = dict(os.environ, GO111MODULE="off", GOPATH=gopath, GOFLAGS="",
               GOCACHE=os.path.join(os.path.dirname(out), "gocache"))
    subprocess.run([go, "build", "-o", out, "."], cwd=os.path.join(HERE, "go"), env=env, check=True)
    return out


class Checker:
    def __init__(self, binary, log_key):
        self.binary = binary
        self.log_key = log_key

    def run(self, tiles, policy=None, proofs=None):
        cmd = [self.binary, "-tiles", tiles, "-log-key", self.log_key]
        if policy:
            cmd += ["-policy", policy]
        if proofs:
            cmd += ["-proofs", proofs]
        return subprocess.run(cmd, capture_output=True, text=True)

    def must_pass(self, what, **kw):
        r = self.run(**kw)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            raise SystemExit(f"FAIL {what}: the Go checker refused:\n{r.stderr}")
        print(f"PASS {what}")

    def must_fail(self, what, needle, **kw):
        r = self.run(**kw)
        if r.returncode == 0:
            raise SystemExit(f"FAIL {what}: the Go checker accepted it:\n{r.stdout}")
        if needle not in r.stderr:
            raise SystemExit(f"FAIL {what}: refused for another reason than {needle!r}:\n{r.stderr}")
        print(f"PASS {what} (refused: {r.stderr.strip()})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoulders", required=True)
    args = ap.parse_args()
    shoulders = os.path.abspath(args.shoulders)
    work = tempfile.mkdtemp(prefix="shoulders-interop-")
    procs = []
    try:
        checker_bin = build_checker(os.path.join(work, "c2sp-interop"))
        data = os.path.join(work, "ledger")
        run([shoulders, "demo", "--data-dir", data, "--no-serve"])
        log_key = open(os.path.join(data, "log.pub")).read().strip()
        old_checkpoint = run([shoulders, "checkpoint", "--data-dir", data]).stdout
        # Grow the log past the old checkpoint (so there is a consistency proof to check) and past
        # two full tiles (so full hash tiles, a level-1 tile and full bundles are read too).
        for i in range(280):
            run([shoulders, "deposit", "--data-dir", data, "--account", "operator",
                 "--amount-micros", str(1000 + i), "--reference", f"interop {i}"])

        # Three witnesses, each knowing this log.
        witnesses = []
        for i in range(3):
            wdir = os.path.join(work, f"witness{i}")
            run([shoulders, "witness", "init", "--dir", wdir, "--name", f"w{i}.interop.example"])
            vkey = run([shoulders, "witness", "key", "--dir", wdir]).stdout.strip()
            port = free_port()
            procs.append(subprocess.Popen(
                [shoulders, "witness", "serve", "--dir", wdir, "--listen", f"127.0.0.1:{port}",
                 "--log", log_key],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            witnesses.append((vkey, f"http://127.0.0.1:{port}"))
        policy = os.path.join(work, "witnesses.policy")
        with open(policy, "w") as f:
            f.write("# 2 of 3\n")
            for vkey, url in witnesses:
                f.write(f"witness {vkey} {url}\n")
            f.write("quorum 2\n")
        # A policy naming a witness that never saw this log: at most 2 of its 3 can have cosigned.
        stranger = os.path.join(work, "stranger")
        run([shoulders, "witness", "init", "--dir", stranger, "--name", "stranger.interop.example"])
        stranger_vkey = run([shoulders, "witness", "key", "--dir", stranger]).stdout.strip()
        policy_all = os.path.join(work, "unmet.policy")
        with open(policy_all, "w") as f:
            for vkey in [witnesses[0][0], witnesses[1][0], stranger_vkey]:
                f.write(f"witness {vkey}\n")
            f.write("quorum 3\n")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen(
            [shoulders, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}",
             "--witness-policy", policy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        note = wait_for(f"{base}/log/checkpoint").decode()
        size = int(note.split("\n")[1])
        print(f"served checkpoint: size {size}, {note.count(chr(0x2014)) - 1} cosignatures")

        # shoulders' own proofs, for Go to check.
        inclusion = []
        for index in sorted({0, size // 2, size - 1}):
            for tree_size in sorted({index + 1, size}):
                _, body = get(f"{base}/api/proofs/inclusion?index={index}&size={tree_size}")
                proof = json.loads(body)
                _, record = get(f"{base}/api/records/{index}")
                inclusion.append({
                    "leaf_index": index, "tree_size": tree_size, "hashes": proof["hashes"],
                    "record_b64": base64.b64encode(record_bytes(record)).decode(),
                })
        old_size = int(old_checkpoint.split("\n")[1])
        _, body = get(f"{base}/api/proofs/consistency?old={old_size}&new={size}")
        consistency = json.loads(body)
        proofs = os.path.join(work, "proofs.json")
        with open(proofs, "w") as f:
            json.dump({"old_checkpoint": old_checkpoint, "inclusion": inclusion,
                       "consistency": {"old_size": old_size, "new_size": size,
                                       "hashes": consistency["hashes"]}}, f)

        checker = Checker(checker_bin, log_key)
        checker.must_pass("served tiles, cosigned checkpoint and shoulders proofs",
                          tiles=f"{base}/log/", policy=policy, proofs=proofs)

        pub = os.path.join(work, "published")
        run([shoulders, "publish", "--data-dir", data, "--out", pub])
        checker.must_pass("a published tile directory", tiles=pub, proofs=proofs)
        mirror = os.path.join(work, "mirror")
        run([shoulders, "publish", "--data-dir", data, "--out", mirror, "--cosigned"])
        checker.must_pass("a published mirror of the cosigned tree, with the quorum",
                          tiles=mirror, policy=policy, proofs=proofs)

        # Each of these must be refused, or the passes above prove nothing.
        checker.must_fail("a policy the checkpoint cannot meet (3 of 3, one never asked)", "cosignatures the policy needs",
                          tiles=f"{base}/log/", policy=policy_all)
        forged_dir = os.path.join(work, "forged")
        shutil.copytree(pub, forged_dir)
        cosigned = note.encode()
        lines = cosigned.split(b"\n")
        for i, line in enumerate(lines):
            # The second signature line is a witness's; flip one bit of its signature.
            if line.startswith("\u2014 w".encode()):
                name, sig = line.rsplit(b" ", 1)
                raw = bytearray(base64.b64decode(sig))
                raw[-1] ^= 1
                lines[i] = name + b" " + base64.b64encode(bytes(raw))
                break
        with open(os.path.join(forged_dir, "checkpoint"), "wb") as f:
            f.write(b"\n".join(lines))
        checker.must_fail("a forged cosignature", "signed note", tiles=forged_dir, policy=policy)

        bad_tile = os.path.join(work, "bad-tile")
        shutil.copytree(pub, bad_tile)
        flip(first_file(os.path.join(bad_tile, "tile", "0")))
        # sumdb/tlog as Debian packages it (x/mod 0.7.0) checks only some full tiles against their
        # parents (the flaw shoulders' own reader works around); a forged tile it lets through
        # still fails when its leaves are compared with the entries.
        checker.must_fail("a tampered hash tile", "", tiles=bad_tile)
        # shoulders' own reader refuses the same tile as a tile, whatever the entries say.
        ours = subprocess.run([shoulders, "verify", "--tiles", bad_tile, "--key", log_key],
                              capture_output=True, text=True)
        if ours.returncode == 0 or "E_TILE_INVALID" not in ours.stderr:
            raise SystemExit(f"FAIL shoulders verify --tiles on a tampered hash tile:\n{ours.stderr}")
        print("PASS shoulders verify --tiles refuses the tampered hash tile (E_TILE_INVALID)")

        bad_bundle = os.path.join(work, "bad-bundle")
        shutil.copytree(pub, bad_bundle)
        flip(first_file(os.path.join(bad_bundle, "tile", "entries")))
        checker.must_fail("a tampered entry bundle", "does not hash to its leaf", tiles=bad_bundle)
        print("interop: every check passed")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def record_bytes(body):
    """`GET /api/records/{i}` answers the record's exact signed bytes (canonical JSON)."""
    return body


def first_file(root):
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            return os.path.join(dirpath, name)
    raise SystemExit(f"no file under {root}")


def flip(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open(path, "wb").write(bytes(data))


if __name__ == "__main__":
    main()
