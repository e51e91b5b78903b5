#!/usr/bin/env bash
# Fuzz every decoder of untrusted input (records, JSON bodies, checkpoints, proofs, exports,
# safetensors/GGUF headers, index files). Bounded CI run: 2,000 executions per harness.
# Long run:  SHOULDERS_FUZZ_CASES=1000000 bash reliability/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${SHOULDERS_FUZZ_CASES:-2000}"
# 8 harnesses run $cases executions each; the index-file harness (which builds an index per
# execution) runs a quarter of that.
start=$(date +%s)
# Bounded runs reuse the debug build of the test suite; long runs are worth a release build.
profile=()
if [ "$cases" -gt 10000 ]; then profile=(--release); fi
SHOULDERS_FUZZ_CASES="$cases" cargo test "${profile[@]}" -p shoulders-fuzz --test decoders -- --test-threads 2
echo "fuzz: 9 harnesses, $((8 * cases + (cases + 3) / 4)) executions, 0 crashes, $(( $(date +%s) - start )) s"
