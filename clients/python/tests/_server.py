"""A live ``shoulders serve`` for the tests: a fresh data directory seeded by ``shoulders demo``
(operator, actors, an indexed verse dataset, metered calls, so statements have lines), an API
key, and a server on a free port, stopped with SIGTERM (a clean stop exits 0).

The binary is ``$SHOULDERS_BIN``, default ``target/debug/shoulders`` under the repository root.
"""

import json
import os
import subprocess
import tempfile

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
#: How long the server may take to start or stop before the test fails (it takes well under a
#: second; this only bounds a hang).
PROCESS_DEADLINE_S = 60


def shoulders_bin() -> str:
    path = os.environ.get("SHOULDERS_BIN", os.path.join(REPO_ROOT, "target", "debug", "shoulders"))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no shoulders binary at {path}: build it with `cargo build -p shoulders-cli` "
                           "or set SHOULDERS_BIN")
    return path


def run(*args: str) -> str:
    """Run the CLI; its stdout on success, else a failure naming its stderr."""
    out = subprocess.run([shoulders_bin(), *args], capture_output=True, timeout=PROCESS_DEADLINE_S)
    if out.returncode != 0:
        raise RuntimeError(f"shoulders {' '.join(args)} failed: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode("utf-8")


class Server:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="shoulders-pyclient-")
        self.data_dir = os.path.join(self.tmp.name, "ledger")
        run("demo", "--no-serve", "--data-dir", self.data_dir)
        # erin is the demo's paying customer; the key lets the tests ask for attribution.
        self.api_key = json.loads(run("apikey", "new", "--data-dir", self.data_dir,
                                      "--actor", "erin"))["api_key"]
        with open(os.path.join(self.data_dir, "log.pub"), encoding="utf-8") as f:
            self.verifier_key = f.read().strip()
        self.stderr = open(os.path.join(self.tmp.name, "serve.stderr"), "wb")
        self.proc = subprocess.Popen(
            [shoulders_bin(), "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        # The first thing printed is one pretty-printed JSON object naming the address.
        text = ""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=PROCESS_DEADLINE_S)
                raise RuntimeError("shoulders serve exited before listening: " + self.stderr_text())
            text += line
            try:
                self.info = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
        self.url = self.info["listening"]

    def stderr_text(self) -> str:
        with open(os.path.join(self.tmp.name, "serve.stderr"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=PROCESS_DEADLINE_S)
        self.proc.stdout.close()
        self.stderr.close()
        self.tmp.cleanup()
        return code
