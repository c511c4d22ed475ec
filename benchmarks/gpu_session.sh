#!/usr/bin/env bash
# One prepared GPU session (run through the device tool, from the repository root):
#   1. parity tests on CUDA (fp32, TF32 off);
#   2. DiM-L/2 forward timings per scan path;
#   3. training, concurrently on the one GPU: the embedded model (emoji-XS, resumed from
#      checkpoints/train_state) and the three ablation variants (same recipe, seed, batch size,
#      ABL_STEPS steps), each evaluated every EVAL_EVERY steps.
# Needs (carried, git-ignored): .wheels/ (PyWavelets for the GPU image's Python) and
# .cache/emoji32_v16.0.0_f1.npz (the data set, built here with `dimsum build-data`).
# Results go to $OUT. MINUTES bounds each training run's wall time.
set -u
OUT=${OUT:-/tmp/out}
MINUTES=${MINUTES:-7}
EVAL_EVERY=${EVAL_EVERY:-500}
DATA=${DATA:-.cache/emoji32_v16.0.0_f1.npz}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu SKIP_BENCH=1 MINUTES=0.3 for a dry run on a CPU
SKIP_BENCH=${SKIP_BENCH:-0}
BATCH_MAIN=${BATCH_MAIN:-256}
# The main run ends at MAIN_STEPS (or MINUTES); with COOLDOWN > 0 its LR decays linearly to 0 over
# the last COOLDOWN steps, so pick MAIN_STEPS it can reach in MINUTES (the shipped CPU run ended
# with such a cool-down; resuming it at the constant LR re-warms it).
MAIN_STEPS=${MAIN_STEPS:-1000000}
COOLDOWN=${COOLDOWN:-0}
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
# The recipe of the shipped CPU runs (checkpoints/README.md), so GPU steps extend the same curves.
recipe=(--data "$DATA" --seed 0 --lr 1e-3 --warmup 100 --ema-decay 0.999 --label-dropout 0.15
        --grad-clip 2.0 --ckpt-every 500 --log-every 20 --eval-every "$EVAL_EVERY"
        --eval-samples "${EVAL_SAMPLES:-450}" --device "$DEVICE")
pids=()
# The embedded model continues from its shipped training state (exact resume; the batch may differ).
mkdir -p /tmp/runs/emoji-XS && cp checkpoints/train_state/state.pt /tmp/runs/emoji-XS/state.pt
$PY -m dimsum.cli train --preset emoji-XS --out /tmp/runs/emoji-XS --steps "$MAIN_STEPS" \
    --cooldown "$COOLDOWN" --batch-size "$BATCH_MAIN" --max-minutes "$MINUTES" "${recipe[@]}" \
    > "$OUT/train_emoji-XS.txt" 2>&1 & pids+=($!)
# Ablation at a longer fixed budget: same steps, batch 32, seed for all three variants.
for v in dimsum spatial-only attention; do
    preset=emoji-XS; [ "$v" = spatial-only ] && preset=emoji-XS-spatial
    [ "$v" = attention ] && preset=emoji-XS-attention
    $PY -m dimsum.cli train --preset "$preset" --out "/tmp/runs/abl-$v" --steps "${ABL_STEPS:-3000}" --max-minutes "$MINUTES" \
        --batch-size 32 "${recipe[@]}" > "$OUT/train_abl-$v.txt" 2>&1 & pids+=($!)
done
wait "${pids[@]}"

echo "== collect"
mkdir -p "$OUT/runs"
for d in /tmp/runs/*; do
    name=$(basename "$d"); mkdir -p "$OUT/runs/$name"
    cp "$d"/log.jsonl "$d"/eval.jsonl "$d"/state.pt "$OUT/runs/$name/" 2>/dev/null
    tail -c 400 "$OUT/train_$name.txt"; echo
done
# Afterwards, here: dimsum export runs/emoji-XS/state.pt <folder>; python -m dimsum.ablation
#   --steps $ABL_STEPS --variant dimsum=runs/abl-dimsum/state.pt ... (see checkpoints/README.md).
du -sh "$OUT"/runs/*
