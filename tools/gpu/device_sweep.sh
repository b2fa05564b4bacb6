#!/usr/bin/env bash
# The tuning sweep's device call (docs/gpu-proxy.md, "Kernels that scale"): times every candidate of
# tools/gpu/sweep.ts and the compositions of the best choices per role (replay.py sweep), then checks the new
# kernel layouts on the fixtures (parity with 4 streams, racecheck and synccheck). Every step has a time
# limit. Writes under $OUT: env.txt sweep.json sweep.log parity.json checks.log
# Usage (on the device, from the checkout): bash .gpu/device_sweep.sh [.gpu]
#   SWEEP_COMPOSE='[[inR,inK,outR,outK,split],…]' also composes and times these tunings (e.g. the defaults).
set -uo pipefail
G=${1:-.gpu}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
say() { echo "[$(($(date +%s) - START))s] $*"; }
R="python3 $G/replay.py"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader > "$OUT/env.txt" 2>&1
say "$(cat "$OUT/env.txt")"

say "sweep (limit ${SWEEP_LIMIT:-300} s)"
timeout "${SWEEP_LIMIT:-300}" $R sweep --build "$G/build" --sweep "$G/sweep" --json "$OUT/sweep.json" \
  > "$OUT/sweep.log" 2>&1
say "sweep rc $?"
grep -E "composed|best at|copy bandwidth|Error|error" "$OUT/sweep.log" | tail -40

FX=$(for t in "$G"/fx*/*; do [[ -f $t/session.json ]] && echo --trace "$t"; done)
say "parity of the fixtures traced with other layouts (4 streams)"
timeout "${PARITY_LIMIT:-60}" $R parity --build "$G/build" $FX --json "$OUT/parity.json" 2>&1 | tail -12
for tool in racecheck synccheck; do
  say "$tool, fixtures (first layout)"
  timeout "${CHECK_LIMIT:-40}" compute-sanitizer --tool $tool $R parity --build "$G/build" --serial \
    $(for t in "$G"/fxA/*; do [[ -f $t/session.json ]] && echo --trace "$t"; done) > "$OUT/$tool.log" 2>&1
  say "$tool rc $?: $(grep -E "SUMMARY|PARITY" "$OUT/$tool.log" | tr '\n' ' ')"
done
say "done"
