#!/usr/bin/env bash
# A long fuzz campaign on a machine with many cores: every target at once, in libFuzzer's fork mode (a
# crash, hang or out-of-memory input is saved and the run goes on, where deno task fuzz stops at the first).
#
#   tools/fuzz_campaign.sh DRIVER SECONDS OUTDIR [FORKS_PER_TARGET]
#
# DRIVER is swift/.build-fuzz/release/MambaFuzz (deno task fuzz --list builds it). Seeds come from
# tests/fuzz/corpus; OUTDIR gets per target the grown corpus, the artifacts and the log, and summary.txt
# (executions, coverage). Same limits as deno task fuzz: 1 s per input, 64 MiB per allocation.
set -euo pipefail
driver=$(realpath "$1") seconds=$2 out=$(realpath -m "$3") forks=${4:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
targets=$(MAMBA_FUZZ_TARGET=list "$driver" | cut -d' ' -f1)
for t in $targets; do
  max_len=$(MAMBA_FUZZ_TARGET=list "$driver" | awk -v t="$t" '$1 == t { print $2 }')
  mkdir -p "$out/$t/corpus" "$out/$t/artifacts"
  (cd "$out/$t" && MAMBA_FUZZ_TARGET=$t MAMBA_FUZZ_STATE_MODEL="$root/tests/fuzz/state-model" \
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=quarantine_size_mb=64 \
    "$driver" -fork="$forks" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_len="$max_len" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=64 -use_value_profile=1 \
    -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$out/$t/artifacts/" \
    corpus "$root/tests/fuzz/corpus/$t" > log.txt 2>&1) &
done
wait
{
  printf '%-12s %12s %8s %8s %8s %s\n' target executions cov ft corpus artifacts
  for t in $targets; do
    log="$out/$t/log.txt"
    # fork mode prints "#N: cov: C ft: F corp: K exec/s: E oom/timeout/crash: a/b/c time: Ts job: J dft_time: D"
    last=$(grep -E '^#[0-9]+: cov: ' "$log" | tail -1 || true)
    runs=$(sed -nE 's/^#([0-9]+): .*/\1/p' <<<"$last")
    cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+) .*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+) .*/\1/p' <<<"$last")
    printf '%-12s %12s %8s %8s %8s %s\n' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
      "$(ls "$out/$t/artifacts" | wc -l)"
  done
} | tee "$out/summary.txt"
