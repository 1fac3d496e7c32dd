#!/usr/bin/env bash
# Runs `npm test` N times in a row and stops at the first failure: the check that the suite is
# deterministic (issue 11: 10 consecutive runs idle, 3 with both cores kept busy).
#
#   scripts/test-repeat.sh [runs=10] [--busy]
#
# --busy keeps every core busy with a spin loop per core (nproc) for the whole run; the spinners
# stop by themselves after 2 hours at most and are killed when this script exits.
# Prints one line per run (exit code, wall seconds) and a final "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=10
busy=false
for arg in "$@"; do
  case "$arg" in
    --busy) busy=true ;;
    ''|*[!0-9]*) echo "usage: $0 [runs] [--busy]" >&2; exit 2 ;;
    *) runs=$arg ;;
  esac
done

spinners=()
cleanup() { for p in "${spinners[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
if $busy; then
  for _ in $(seq "$(nproc)"); do
    timeout 7200 node -e 'for (;;) {}' &
    spinners+=($!)
  done
  echo "== $(nproc) spin loops keep the cores busy"
fi

logs=$(mktemp -d)
passed=0
failed=0
for i in $(seq "$runs"); do
  start=$(date +%s)
  if npm test > "$logs/run-$i.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $i: ok in $(( $(date +%s) - start )) s"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED in $(( $(date +%s) - start )) s (log: $logs/run-$i.log)"
    grep -E "FAIL|AssertionError|Unhandled|Error:" "$logs/run-$i.log" | head -20
    break
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
