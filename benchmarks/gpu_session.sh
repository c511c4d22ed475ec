#!/usr/bin/env bash
# One prepared GPU session (run through the device tool, from the repository root):
#   1. parity tests on CUDA (fp32, TF32 off);
#   2. DiM-L/2 forward timings per scan path;
#   3. training, concurrently on the one GPU: the embedded model (emoji-S) and the three
#      ablation variants (same recipe, seed, batch size), each evaluated every EVAL_EVERY steps.
# Needs (carried, git-ignored): .wheels/ (PyWavelets for the GPU image's Python) and
# .cache/emoji32_v16.0.0_f1.npz (the data set, built here with `dimsum build-data`).
# Results go to $OUT. MINUTES bounds each training run's wall time.
set -u
OUT=${OUT:-/tmp/out}
MINUTES=${MINUTES:-5}
EVAL_EVERY=${EVAL_EVERY:-250}
DATA=${DATA:-.cache/emoji32_v16.0.0_f1.npz}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu SKIP_BENCH=1 MINUTES=0.3 for a dry run on a CPU
SKIP_BENCH=${SKIP_BENCH:-0}
BATCH_MAIN=${BATCH_MAIN:-512}
BATCH_ABL=${BATCH_ABL:-256}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import pywt" 2>/dev/null || $PY -m pip install -q --no-index --no-deps .wheels/*.whl
$PY -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

if [ "$SKIP_BENCH" = 0 ]; then
echo "== parity on CUDA"
DIMSUM_TEST_DEVICE=cuda timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_parity.py > "$OUT/parity_cuda.txt" 2>&1
tail -3 "$OUT/parity_cuda.txt"

echo "== DiM-L/2 forward"
timeout 120 $PY benchmarks/bench_forward.py --device cuda --batches 1 2 --dtypes fp32 bf16 --repeats 5 > "$OUT/forward_cuda.md" 2>&1
cat "$OUT/forward_cuda.md"
fi

echo "== training"
common=(--data "$DATA" --steps 100000 --seed 0 --lr 5e-4 --warmup 200 --ema-decay 0.999
        --label-dropout 0.15 --grad-clip 2.0 --drop-path 0.0 --bf16 --ckpt-every 500 --log-every 25
        --eval-every "$EVAL_EVERY" --eval-samples "${EVAL_SAMPLES:-450}" --max-minutes "$MINUTES" --device "$DEVICE")
pids=()
$PY -m dimsum.cli train --preset emoji-S --out /tmp/runs/emoji-S --batch-size "$BATCH_MAIN" "${common[@]}" \
    > "$OUT/train_emoji-S.txt" 2>&1 & pids+=($!)
for v in emoji-S-ablation emoji-S-spatial emoji-S-attention; do
    preset=$v; [ "$v" = emoji-S-ablation ] && preset=emoji-S
    $PY -m dimsum.cli train --preset "$preset" --out "/tmp/runs/$v" --batch-size "$BATCH_ABL" "${common[@]}" \
        > "$OUT/train_$v.txt" 2>&1 & pids+=($!)
done
wait "${pids[@]}"

echo "== collect"
mkdir -p "$OUT/runs"
for d in /tmp/runs/*; do
    name=$(basename "$d"); mkdir -p "$OUT/runs/$name"
    cp "$d"/log.jsonl "$d"/eval.jsonl "$OUT/runs/$name/" 2>/dev/null
    tail -c 400 "$OUT/train_$name.txt"; echo
done
cp -r /tmp/runs/emoji-S/ema "$OUT/runs/emoji-S/ema"
cp /tmp/runs/emoji-S/state.pt "$OUT/runs/emoji-S/state.pt"
# Ablation checkpoints in bfloat16 (half the bytes; the app loads them as float32).
$PY - <<'EOF'
import dimsum, os, torch
out = os.environ.get("OUT", "/tmp/out")
for v in ("emoji-S-ablation", "emoji-S-spatial", "emoji-S-attention"):
    m = dimsum.load_checkpoint(f"/tmp/runs/{v}/ema")
    m.save_pretrained(f"{out}/runs/{v}/ema", dtype=torch.bfloat16)
EOF
du -sh "$OUT"/runs/*
