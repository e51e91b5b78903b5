#!/usr/bin/env bash
# The bounded CI versions of the reliability harnesses (run by .ci/run; each prints its figures).
# Long versions: SHOULDERS_FUZZ_CASES=1000000 bash reliability/fuzz.sh, and see README.md here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p shoulders-cli
echo "== reliability: fuzz (bounded)"
bash reliability/fuzz.sh
echo "== reliability: I/O faults"
bash reliability/faults.sh
echo "== reliability: SIGKILL the server under load (100 kills)"
python3 reliability/crash_server.py --shoulders "$PWD/target/debug/shoulders" --kills 100
echo "== reliability: API fuzzing with schemathesis"
bash reliability/api_fuzz.sh
echo "== reliability: soak (bounded: 20 s; the full run is --seconds 300 on a release build)"
python3 reliability/soak.py --shoulders "$PWD/target/debug/shoulders" --seconds 20
echo "== reliability: hostile clients (the attacks of issue 15, bounded: about 20-40 s, debug build)"
python3 reliability/hostile.py --shoulders "$PWD/target/debug/shoulders"
