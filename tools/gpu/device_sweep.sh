#!/usr/bin/env bash
# The tuning sweep's device call (docs/gpu-proxy.md, "Kernels that scale"): times every candidate of
# tools/gpu/sweep.ts and the compositions of the best choices per role (replay.py sweep), then checks the new
# kernel layouts on the fixtures (parity with 4 streams, racecheck and synccheck); where prepare.ts left
# traces/ (sessions traced with one tuning, with CPU references), their timings and parity too. Every step
# has a time limit. Writes under $OUT: env.txt sweep.json sweep.log timing.json parity-traces.json
# parity.json racecheck.log synccheck.log simdcheck.log
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

say "sweep (limit ${SWEEP_LIMIT:-150} s)"
timeout "${SWEEP_LIMIT:-150}" $R sweep --build "$G/build" --sweep "$G/sweep" --json "$OUT/sweep.json" \
  > "$OUT/sweep.log" 2>&1
say "sweep rc $?"
grep -E "composed|best at|copy bandwidth|Error|error" "$OUT/sweep.log" | tail -40

# The sessions prepare.ts traced (with the tuning it was given, e.g. the defaults): timings, then parity.
if [[ -d $G/traces ]]; then
  TT=$(for t in ${TIME_TRACES:-130m-f16-b1 130m-f16-b8 130m-f16-b4 130m-f32-b1 780m-f16-b1}; do
    [[ -d $G/traces/$t ]] && echo --trace "$G/traces/$t"; done)
  say "timings of $G/traces (limit ${TIME_LIMIT:-60} s)"
  timeout "${TIME_LIMIT:-60}" $R time --build "$G/build" $TT --json "$OUT/timing.json" 2>&1 \
    | grep -E "time|decode_step|matvec|ssm_decode|prefill_|copy" | tail -40
  PT=$(for t in ${PARITY_TRACES:-fx-g2-f32-b2 fx-f16-b2 fx-odd-f32-b2 fx-odd-f16-b1-rec fx-g1-b4-rec 130m-f16-b1 130m-f16-b4 130m-f16-b8 130m-f16-b1-rec 130m-f32-b1}; do
    [[ -d $G/traces/$t ]] && echo --trace "$G/traces/$t"; done)
  say "parity of $G/traces (limit ${PARITY_LIMIT:-45} s)"
  timeout "${PARITY_LIMIT:-45}" $R parity --build "$G/build" $PT --json "$OUT/parity-traces.json" 2>&1 | tail -12
fi

FX=$(for t in "$G"/fx*/*; do [[ -f $t/session.json ]] && echo --trace "$t"; done)
say "parity of the fixtures traced with other layouts (4 streams)"
timeout "${PARITY_LIMIT:-45}" $R parity --build "$G/build" $FX --json "$OUT/parity.json" 2>&1 | tail -12
for tool in racecheck synccheck; do
  say "$tool, fixtures (first layout)"
  timeout "${CHECK_LIMIT:-25}" compute-sanitizer --tool $tool $R parity --build "$G/build" --serial \
    $(for t in "$G"/fxA/*; do [[ -f $t/session.json ]] && echo --trace "$t"; done) > "$OUT/$tool.log" 2>&1
  say "$tool rc $?: $(grep -E "SUMMARY|PARITY" "$OUT/$tool.log" | tr '\n' ' ')"
done
if [[ -f $G/build/kernels.json ]] && grep -q simdCubin "$G/build/kernels.json"; then
  say "SIMD-group uniformity check (MC_CHECK_SIMD build), fixtures (first layout)"
  timeout "${CHECK_LIMIT:-25}" $R parity --build "$G/build" --simd-check \
    $(for t in "$G"/fxA/*; do [[ -f $t/session.json ]] && echo --trace "$t"; done) > "$OUT/simdcheck.log" 2>&1
  say "simd-check rc $?: $(grep -oE "'violations': [0-9]+" "$OUT/simdcheck.log" | sort | uniq -c | tr '\n' ' ')"
fi
say "done"
