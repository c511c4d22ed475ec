#!/usr/bin/env bash
# One prepared GPU session (run through the device tool, from the repository root):
#   1. parity tests on CUDA (fp32, TF32 off), in the background of the training;
#   2. DiM-L/2 forward timings per scan path (BENCH=1; off by default: it would share the GPU);
#   3. the embedded model (emoji-XS), resumed from $STATE (default: checkpoints/train_state), in
#      two phases that fit a wall-clock budget: P1_MINUTES at the constant LR, then a linear
#      cool-down to LR 0 whose length in steps comes from the step rate measured in phase 1 (so
#      it ends at LR ~0 in P2_MINUTES whatever the GPU's speed); the EMA is evaluated at the end
#      of each phase;
#      VARIANTS (';'-separated name=extra flags, e.g. "base=;ln=--time-sampling logit_normal")
#      are trained side by side from the same state, each into $OUT/<name>.tgz;
#   4. ABLATION=1: the three ablation variants (same recipe, seed, batch 32, ABL_STEPS steps);
#   5. PROFILE=1 (first, alone on the GPU): training-step time at BATCH_MAIN and 4x it, and the top
#      ops of a profiled step (benchmarks/bench_train_step.py), into $OUT/profile.txt.
# Needs (carried, git-ignored): .wheels/ (PyWavelets for the GPU image's Python) and
# .cache/emoji32_v16.0.0_f1.npz (the data set, built here with `dimsum build-data`).
# Results go to $OUT (at most 8 files come back: gpu.txt, profile.txt, one .tgz per variant). Dry
# run on a CPU (two variants, ~5 min on 2 cores):
#   DEVICE=cpu P1_MINUTES=0.7 P2_MINUTES=0.3 BATCH_MAIN=8 EVAL_SAMPLES=16 OUT=/tmp/gs \
#       RUN_ROOT=/tmp/gsruns VARIANTS="base=;ln=--time-sampling logit_normal" bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-/tmp/out}
P1_MINUTES=${P1_MINUTES:-3}
P2_MINUTES=${P2_MINUTES:-3.5}
DATA=${DATA:-.cache/emoji32_v16.0.0_f1.npz}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PARITY=${PARITY:-$([ "$DEVICE" = cuda ] && echo 1 || echo 0)}
BENCH=${BENCH:-0}
ABLATION=${ABLATION:-0}
BATCH_MAIN=${BATCH_MAIN:-512}
LR=${LR:-1e-3}
RUN_ROOT=${RUN_ROOT:-/tmp/runs}
VARIANTS=${VARIANTS:-base=}
STATE=${STATE:-checkpoints/train_state/state.pt}  # the training state every variant starts from
mkdir -p "$OUT" "$RUN_ROOT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import pywt" 2>/dev/null || $PY -m pip install -q --no-index --no-deps .wheels/*.whl
$PY -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

if [ "${PROFILE:-0}" = 1 ]; then
    echo "== training-step profile"
    timeout 120 $PY benchmarks/bench_train_step.py --device "$DEVICE" --batch-sizes "$BATCH_MAIN" \
        $((BATCH_MAIN * 4)) --steps 5 --profile 2 > "$OUT/profile.txt" 2>&1
    head -8 "$OUT/profile.txt"
fi
parity_pid=
if [ "$PARITY" = 1 ]; then
    echo "== parity on CUDA (background)"
    DIMSUM_TEST_DEVICE=cuda timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_parity.py \
        > "$OUT/parity_cuda.txt" 2>&1 & parity_pid=$!
fi
if [ "$BENCH" = 1 ]; then
    echo "== DiM-L/2 forward"
    timeout 120 $PY benchmarks/bench_forward.py --device cuda --batches 1 2 --dtypes fp32 bf16 \
        --repeats 5 >> "$OUT/gpu.txt" 2>&1
fi

# The recipe of the shipped CPU runs (checkpoints/README.md), so GPU steps extend the same curves.
# --eval-every: no periodic evaluation, but the evaluator exists, so the end of each phase
# (--max-minutes or --steps reached) is evaluated (--eval-every 0 would turn it off entirely).
recipe=(--data "$DATA" --seed 0 --warmup 100 --ema-decay 0.999 --label-dropout 0.15
        --grad-clip 2.0 --ckpt-every 1000 --log-every 20 --eval-every 1000000
        --eval-samples "${EVAL_SAMPLES:-450}" --device "$DEVICE")
abl_pids=()
if [ "$ABLATION" = 1 ]; then
    for v in dimsum spatial-only attention; do
        preset=emoji-XS; [ "$v" = spatial-only ] && preset=emoji-XS-spatial
        [ "$v" = attention ] && preset=emoji-XS-attention
        $PY -m dimsum.cli train --preset "$preset" --out "/tmp/runs/abl-$v" --steps "${ABL_STEPS:-3000}" \
            --max-minutes "$P1_MINUTES" --batch-size 32 --lr 1e-3 "${recipe[@]}" \
            > "$OUT/train_abl-$v.txt" 2>&1 & abl_pids+=($!)
    done
fi

# One variant of the continued training: $1 = name, the rest = extra `dimsum train` flags for both
# phases (they come after the defaults, so e.g. --lr or --batch-size override them).
train_variant() {
    local name=$1; shift
    local run=$RUN_ROOT/$name log=$RUN_ROOT/$name/train.txt
    mkdir -p "$run" && cp "$STATE" "$run/state.pt"
    local start s1 rate cool
    start=$($PY -c "import torch; print(torch.load('$run/state.pt', map_location='cpu', weights_only=True)['step'])")
    echo "== $name phase 1: constant LR, $P1_MINUTES min ($*)" | tee -a "$log"
    $PY -m dimsum.cli train --preset emoji-XS --out "$run" --steps 100000000 --batch-size "$BATCH_MAIN" \
        --lr "$LR" --max-minutes "$P1_MINUTES" "${recipe[@]}" "$@" >> "$log" 2>&1
    # Steps per second over phase 1's log records (evaluation time excluded), then the cool-down
    # length; the step phase 1 stopped at comes from its state (the log has every 20th step).
    read -r s1 rate < <($PY - "$run/log.jsonl" "$start" "$run/state.pt" "$P1_MINUTES" <<'PY'
import json, sys, torch
import os
start = int(sys.argv[2])
step = torch.load(sys.argv[3], map_location="cpu", weights_only=True)["step"]
recs = [json.loads(l) for l in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
recs = [r for r in recs if r["step"] > start]
if len(recs) >= 3:
    a, b = recs[min(2, len(recs) - 2)], recs[-1]  # skip the first records (CUDA warm-up)
    print(step, (b["step"] - a["step"]) / max(b["seconds"] - a["seconds"], 1e-9))
else:  # too few records (a very slow device): steps over the whole phase
    print(step, (step - start) / (60 * float(sys.argv[4])))
PY
)
    cool=$($PY -c "print(max(1, int($rate * 60 * $P2_MINUTES * 0.9)))")
    echo "$name: phase 1 ended at step $s1 at $rate steps/s; cool-down over $cool steps" | tee -a "$log" "$OUT/gpu.txt"
    $PY -m dimsum.cli train --preset emoji-XS --out "$run" --steps $((s1 + cool)) --cooldown "$cool" \
        --batch-size "$BATCH_MAIN" --lr "$LR" --max-minutes "$P2_MINUTES" "${recipe[@]}" "$@" \
        >> "$log" 2>&1
    tar -C "$run" --ignore-failed-read -czf "$OUT/$name.tgz" state.pt log.jsonl eval.jsonl train.txt
    echo "$name: $(tail -1 "$run/eval.jsonl" | cut -c1-200)" >> "$OUT/gpu.txt"
}

# VARIANTS: ';'-separated name=flags, trained side by side on the one GPU (the model is small, so
# one process leaves the GPU mostly idle), each from the shipped state in its own folder.
IFS=';' read -r -a specs <<< "$VARIANTS"
var_pids=()
for spec in "${specs[@]}"; do
    read -r -a flags <<< "${spec#*=}"
    train_variant "${spec%%=*}" "${flags[@]}" & var_pids+=($!)
done
wait "${var_pids[@]}"

[ -n "$parity_pid" ] && { wait "$parity_pid"; tail -3 "$OUT/parity_cuda.txt"; }
[ ${#abl_pids[@]} -gt 0 ] && wait "${abl_pids[@]}"
echo "== collect"
cat "$OUT/gpu.txt"
# Afterwards, here: tar xzf <name>.tgz; dimsum export state.pt <folder>; dimsum eval --checkpoint
# <folder> ... and replace checkpoints/ only if the metrics improve (checkpoints/README.md).
ls -la "$OUT"
