#!/usr/bin/env bash
# The run that produced models/demo (run a2 was selected): four settings of tools/train_demo.py trained on one GPU, two at a
# time, then the one with the lowest held-out loss (measured on its float16 weights) is kept.
#
#   bash tools/train_demo_device.sh DATA_DIR OUT_DIR
#
# DATA_DIR holds the six Austen novels (../shared/data/austen); OUT_DIR receives
#   demo/{config.json,model.safetensors,train_log.json}  the selected model
#   summary.json                                        every run's train_log.json
#   stream_a.txt, stream_b.txt                          the runs' output
# EXTRA (environment) is appended to every command line, for a quick CPU check, e.g.
#   EXTRA="--device cpu --d-model 64 --n-layer 2 --max-steps 3 --batch-size 2 --seq-len 64" \
#     bash tools/train_demo_device.sh ../shared/data/austen /tmp/sweep
set -u
DATA=${1:-.cache/austen}
OUT=${2:-/tmp/demo_sweep}
RUNS=${RUNS:-/tmp/demo_runs}
EXTRA=${EXTRA:-}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T="python3 tools/train_demo.py --data-dir $DATA --tokenizer models/demo/tokenizer.json --max-steps 0 --stop-after 0"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"

(
  $T --out "$RUNS/a1" --epochs 8 --dropout 0.0 --time-limit 110 $EXTRA
  $T --out "$RUNS/a2" --epochs 24 --dropout 0.2 --time-limit 250 $EXTRA
) >"$OUT/stream_a.txt" 2>&1 &
(
  $T --out "$RUNS/b1" --epochs 16 --dropout 0.1 --time-limit 160 $EXTRA
  $T --out "$RUNS/b2" --epochs 16 --dropout 0.1 --d-model 384 --n-layer 5 --time-limit 200 $EXTRA
) >"$OUT/stream_b.txt" 2>&1 &
wait

python3 - "$RUNS" "$OUT" <<'EOF'
import glob, json, os, shutil, sys
runs, out = sys.argv[1], sys.argv[2]
logs = {}
for p in sorted(glob.glob(os.path.join(runs, "*", "train_log.json"))):
    with open(p) as f:
        logs[os.path.basename(os.path.dirname(p))] = json.load(f)
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(logs, f, indent=1)
for name, l in logs.items():
    print(f"{name}: held-out f16 {l['heldout_loss_f16']} nats/token {l['heldout_bits_per_byte_f16']} bits/byte, "
          f"best step {l['best_step']}/{l['steps_done']} (requested {l['requested_steps']}), {l['epochs_seen']} epochs, "
          f"{l['tokens_per_second']} tok/s, {l['train_seconds']} s, {l['safetensors_bytes']} bytes")
ok = {k: l for k, l in logs.items() if l["safetensors_bytes"] <= 16_000_000}
if not ok:
    sys.exit("no run finished")
best = min(ok, key=lambda k: ok[k]["heldout_loss_f16"])
print("selected", best)
print("greedy:", ok[best]["greedy_sample"])
os.makedirs(os.path.join(out, "demo"), exist_ok=True)
for fn in ("config.json", "model.safetensors", "train_log.json"):
    shutil.copyfile(os.path.join(runs, best, fn), os.path.join(out, "demo", fn))
EOF
