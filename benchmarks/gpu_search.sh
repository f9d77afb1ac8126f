#!/usr/bin/env bash
# Search ranking quality on one GPU: benchmarks/search_quality.py on the hard embedded set and on fonts,
# 40 candidates x 3 seeds, distilled in parallel processes sharing the GPU, plus the scores' cost per
# candidate on the GPU. Run from the repository root:
#
#   OUT=./gpu_out PYTHONPATH=$PWD:/tmp/site bash benchmarks/gpu_search.sh
#
# Writes three files under $OUT (default ./gpu_out):
#   gpu_search.log                   everything printed, the tables included
#   search_quality.json               the report (re-render: search_quality.py --render FILE --out DIR)
#   search_quality_accuracies.json    the post-KD accuracy cache (merge: search_quality.py --merge-cache FILE)
#
# Settings (environment): EDGEKD_GPU_TINY=1 runs 4 candidates x 1 seed x 1 epoch (a CPU smoke test of this
# script); EDGEKD_GPU_EPOCHS (default 2: the config's default epochs do not fit the wall-time budget, so the
# ranking is of short distillation runs, and the tables say so), EDGEKD_GPU_JOBS (default 12),
# EDGEKD_GPU_BUDGET_S (default 200: the benchmark stops starting runs after this, so the script ends in
# about 4 minutes whatever the GPU's speed), EDGEKD_GPU_DATA (default: the hard embedded set and fonts).
set -euo pipefail

OUT="${OUT:-./gpu_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'cp -f "$WORK/search_quality_accuracies.json" "$WORK/search_quality.json" "$OUT/" 2>/dev/null || true' EXIT

if [ "${EDGEKD_GPU_TINY:-0}" = "1" ]; then
  CANDIDATES=4; SEEDS="0"; EPOCHS=1; JOBS=2; BUDGET=100000
else
  CANDIDATES=40; SEEDS="0 1 2"; EPOCHS="${EDGEKD_GPU_EPOCHS:-2}"; JOBS="${EDGEKD_GPU_JOBS:-12}"
  BUDGET="${EDGEKD_GPU_BUDGET_S:-200}"
fi
# The hard set is whichever embedded data set is neither digits nor fonts (none: fonts alone, said below).
DATA="${EDGEKD_GPU_DATA:-$("$PY" -c "from edgekd.models.embedded_teacher import RECIPES
print(' '.join([k for k in RECIPES if k not in ('digits', 'fonts')] + ['fonts']))")}"

{
  echo "gpu_search: data '$DATA', $CANDIDATES candidates, seeds '$SEEDS', epochs $EPOCHS, $JOBS jobs, budget ${BUDGET}s"
  date -u
  nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'onnxruntime', onnxruntime.__version__, 'cores', __import__('os').cpu_count())"
  start=$(date +%s)
  # shellcheck disable=SC2086  # DATA and SEEDS are word lists
  "$PY" benchmarks/search_quality.py --data $DATA --candidates "$CANDIDATES" --seeds $SEEDS --epochs "$EPOCHS" \
    --jobs "$JOBS" --device auto --budget-s "$BUDGET" --out "$WORK"
  echo "gpu_search: search_quality.py took $(( $(date +%s) - start )) s wall"
} 2>&1 | tee "$OUT/gpu_search.log"
