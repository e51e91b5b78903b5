#!/usr/bin/env bash
# Load benchmark of `shoulders serve` on 127.0.0.1 (bounded: about 10 rows x SHOULDERS_BENCH_SECONDS).
# Prints requests/s and p50/p99 for reads, signed writes and gateway calls, and the gateway's
# added latency (metered: a durable receipt per call) over a direct call to a local
# OpenAI-compatible upstream stub, with and without
# attribution. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export SHOULDERS_BENCH_SECONDS="${SHOULDERS_BENCH_SECONDS:-3}"
exec timeout 900 cargo bench -p shoulders-bench --bench server
