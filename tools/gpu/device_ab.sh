#!/usr/bin/env bash
# Where a decode kernel's time goes, in one call of the `device` tool (docs/gpu-proxy.md, "Where the time
# goes"): the same traces timed with two or more kernel builds (A/B: the traces record the host's plan, so a
# kernel change that keeps its function constants needs only a rebuild), the chain floors of
# tools/gpu/launch_floor.cu, Nsight Compute on the decode kernels of a short session, and the SASS of the
# matvec and SSM block. Writes under $OUT: env.txt ab.log time_BUILD.json floor.json ncu.txt sass.txt.gz
# Usage (on the device, from the checkout): BUILDS="build0 build" bash .gpu/device_ab.sh [.gpu]
#   TRACES (default 130m-f16-b1 130m-f16-b4 130m-f16-b8), NCU_TRACE (default 130m-f16-b1-short),
#   NCU_LIMIT (seconds, default 150; 0 skips Nsight Compute)
set -uo pipefail
G=${1:-.gpu}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
LOG="$OUT/ab.log"
say() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
R="python3 $G/replay.py"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader > "$OUT/env.txt" 2>&1
say "$(cat "$OUT/env.txt")"

FLOOR=tools/gpu/launch_floor.cu; [[ -f $G/launch_floor.cu ]] && FLOOR=$G/launch_floor.cu
if [[ -f $FLOOR ]]; then
  nvcc -O3 -arch=sm_90 "$FLOOR" -o /tmp/launch_floor >> "$LOG" 2>&1 &&
    timeout 60 /tmp/launch_floor 200 > "$OUT/floor.json" 2>> "$LOG"
  say "floor: $(cat "$OUT/floor.json")"
fi

TT=$(for t in ${TRACES:-130m-f16-b1 130m-f16-b4 130m-f16-b8}; do echo --trace "$G/traces/$t"; done)
for b in ${BUILDS:-build}; do
  say "time, build $b"
  timeout "${TIME_LIMIT:-120}" $R time --decode-only --build "$G/$b" $TT --json "$OUT/time_$b.json" 2>&1 |
    grep -E "decode_step|matvec|ssm_decode|embedding|copy" | tee -a "$LOG"
done

B=${PARITY_BUILD:-build}
PT=$(for t in ${PARITY_TRACES:-fx-g2-f32-b2 fx-f16-b2 fx-odd-f32-b2 fx-odd-f16-b1-rec 130m-f16-b1 130m-f16-b8}; do
  [[ -d $G/traces/$t ]] && echo --trace "$G/traces/$t"; done)
say "parity, build $B"
timeout "${PARITY_LIMIT:-90}" $R parity --build "$G/$B" $PT 2>&1 | tail -12 | tee -a "$LOG"

: > "$OUT/sass.txt"
for b in ${BUILDS:-build}; do
  for f in matvec ssm_decode; do
    echo "===== $b/$f.cubin" >> "$OUT/sass.txt"
    cuobjdump -sass "$G/$b/$f.cubin" >> "$OUT/sass.txt" 2>&1
  done
done
gzip -f "$OUT/sass.txt"

if (( ${NCU_LIMIT:-150} > 0 )); then
  : > "$OUT/ncu.txt"
  for b in ${BUILDS:-build}; do
    say "ncu, build $b"
    timeout "$(( ${NCU_LIMIT:-150} / $(echo ${BUILDS:-build} | wc -w) ))" ncu --clock-control none \
      --kernel-name "regex:(matvec|ssm_decode_block)$" --launch-skip "${NCU_SKIP:-0}" --launch-count "${NCU_COUNT:-12}" \
      --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
      --section MemoryWorkloadAnalysis \
      $R parity --build "$G/$b" --serial --trace "$G/traces/${NCU_TRACE:-130m-f16-b1-short}" >> "$OUT/ncu.txt" 2>&1
    say "ncu rc $?"
  done
  gzip -f "$OUT/ncu.txt"
fi
say "done"
