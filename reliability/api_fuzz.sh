#!/usr/bin/env bash
# API fuzzing with schemathesis against the served /openapi.json (bounded examples per route):
# no 5xx, no crash, and nothing appended by the (all invalid or unauthenticated) requests.
# Long run: SHOULDERS_API_FUZZ_EXAMPLES=1000 bash reliability/api_fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SHOULDERS_BIN:-$PWD/target/debug/shoulders}"
examples="${SHOULDERS_API_FUZZ_EXAMPLES:-25}"
work="$(mktemp -d)"
venv="${SHOULDERS_ST_VENV:-$work/venv}"
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r reliability/requirements.txt
fi
"$bin" demo --no-serve --data-dir "$work/ledger" >/dev/null
"$bin" serve --data-dir "$work/ledger" --listen 127.0.0.1:0 > "$work/serve.out" 2>"$work/serve.err" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
    url=$(sed -n 's/.*"listening": "\(http[^"]*\)".*/\1/p' "$work/serve.out")
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "server did not start: $(cat "$work/serve.err")" >&2; exit 1; }
size_before=$(curl -fsS "$url/api/checkpoint" | sed -n 2p)
set +e
"$venv/bin/st" run "$url/openapi.json" --checks not_a_server_error \
    --hypothesis-max-examples "$examples" --hypothesis-seed 1 --request-timeout 10000 \
    --hypothesis-suppress-health-check all --no-color --experimental=openapi-3.1 > "$work/st.out" 2>&1
st_rc=$?
set -e
tail -n 25 "$work/st.out"
kill -0 "$pid" || { echo "API FUZZ FAILED: the server died" >&2; exit 1; }
size_after=$(curl -fsS "$url/api/checkpoint" | sed -n 2p)
[ "$size_before" = "$size_after" ] || { echo "API FUZZ FAILED: log grew from $size_before to $size_after" >&2; exit 1; }
[ "$st_rc" = 0 ] || { echo "API FUZZ FAILED: schemathesis found failures (exit $st_rc)" >&2; exit 1; }
cases=$(grep -oE '[0-9]+ passed' "$work/st.out" | tail -1)
echo "api fuzz: schemathesis ${examples} examples per operation; ${cases:-?} operations, 0 failures; no 5xx; nothing appended (log size $size_after)"
