#!/usr/bin/env bash
# Distillation on one GPU, in one go (about 5 minutes on one H100 with 16 cores):
#   1. the gpu-marked tests (bf16 + channels_last, function matching on the device, logit cache, real OOM)
#   2. benchmarks/distill_throughput.py: plain loop vs edgekd (bf16 + channels_last, cached logits, torch.compile),
#      the teacher's share of the step, and the 224x224 ImageFolder variant (loader alone vs the training step)
#   3. benchmarks/kd_quality.py: teacher, scratch and every method on digits, fonts and shapes x 3 seeds, in
#      parallel processes sharing the GPU, with 0.35x the default epochs (digits 14, fonts 7, shapes 10) and a time
#      budget so the whole script ends in time (rows a budget cut short show n < 3 in the table); shapes also gets
#      the recipe grid (temperature, loss weight, augmentation/mixing, lr) on seed 0
# Run from the repository root:  PYTHONPATH=$PWD[:folder with pydantic etc.] bash benchmarks/gpu_distill.sh
# (edgekd need not be installed; openvino, nncf and plotly are never imported on these paths).
# Writes at most 4 files directly under $OUT (default ./gpu_out): gpu_distill.log, kd_quality.json,
# kd_quality.md and kd_quality.png. EDGEKD_GPU_TINY=1 shrinks every step to a CPU-sized smoke run.
set -u
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_distill.log"
TINY="${EDGEKD_GPU_TINY:-0}"
TOTAL_S="${EDGEKD_GPU_TOTAL_S:-285}"  # the whole script's wall-time target
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
: > "$LOG"

say() { echo "[gpu_distill $(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }
step() {  # step NAME TIMEOUT_S COMMAND...: run with a hard timeout, output to the terminal and the log
  local name=$1 limit=$2
  shift 2
  say "start: $name (timeout ${limit}s)"
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "end: $name rc=$rc"
}

say "OUT=$OUT tiny=$TINY target ${TOTAL_S}s"
python3 - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib, os, platform
print(f"python {platform.python_version()}, {os.cpu_count()} cpus")
for name in ("torch", "torchvision", "pydantic", "numpy", "PIL", "rich", "typer", "yaml", "safetensors",
             "sklearn", "matplotlib", "scipy", "onnx", "onnxruntime", "pytest", "openvino"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '')}")
    except Exception as e:  # noqa: BLE001 - a preflight: report every missing module, stop at none
        print(f"  {name} MISSING ({type(e).__name__}: {e})")
import torch
print(f"cuda: {torch.cuda.is_available()} {torch.cuda.get_device_name() if torch.cuda.is_available() else ''}")
EOF

if [ "$TINY" = "1" ]; then
  step "gpu tests" 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/e2e/test_cuda.py
  step "distill_throughput (tiny)" 300 python3 benchmarks/distill_throughput.py --steps 2 --batch 16 --folder-images 32
  step "kd_quality: sets and teachers (tiny)" 900 python3 benchmarks/kd_quality.py --data digits --prepare-only
  step "kd_quality (tiny)" 900 python3 benchmarks/kd_quality.py --data digits --seeds 0 1 --epochs 1 --jobs 2 \
    --methods kd feature at rkd ta+kd --sweep-also digits --budget-s 200 --deadline-s 600 --out "$OUT"
else
  step "gpu tests" 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/
  if [ "${EDGEKD_GPU_THROUGHPUT:-1}" = "1" ]; then  # 0: skip (figures already taken on this machine kind)
    step "distill_throughput" 95 python3 benchmarks/distill_throughput.py --steps 50
  fi
  step "kd_quality: sets and teachers" 70 python3 benchmarks/kd_quality.py --data shapes fonts digits --prepare-only
  # what is left of the target, less 15 s for the report: start runs for 60% of it, wait for them up to the end
  left=$(( TOTAL_S - SECONDS - 15 ))
  [ "$left" -lt 45 ] && left=45
  budget=$(( left * 6 / 10 ))
  step "kd_quality" $(( left + 20 )) python3 benchmarks/kd_quality.py --data shapes fonts digits --seeds 0 1 2 \
    --sweep-also shapes --epoch-scale "${EDGEKD_GPU_EPOCH_SCALE:-0.35}" --jobs "${EDGEKD_GPU_JOBS:-14}" \
    --budget-s "$budget" --deadline-s "$left" --out "$OUT"
fi
say "done in ${SECONDS}s; files: $(ls "$OUT" | tr '\n' ' ')"
