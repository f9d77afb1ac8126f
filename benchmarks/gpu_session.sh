#!/usr/bin/env bash
# Every GPU check of the project in one run, for a machine lent for a few minutes (one GPU, ~16 cores):
#   1. benchmarks/gpu_distill.sh: the gpu-marked tests, distill_throughput.py, then kd_quality.py;
#   2. benchmarks/gpu_search.sh: search_quality.py, started once kd_quality.py has begun, so the two
#      training benchmarks share the GPU while the throughput timings run alone.
# Run from the repository root. If a .whl/ folder is there (packages the machine lacks, e.g. pydantic), they
# are installed into /tmp/site first. edgekd itself is used from the checkout (PYTHONPATH), not installed.
# Outputs (at most 8 files) go directly under $OUT (default ./gpu_out).
set -u
OUT="${OUT:-./gpu_out}"
export OUT PYTHONUNBUFFERED=1 MPLBACKEND=Agg
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L 2>/dev/null || echo "gpu_session: no nvidia-smi"

EDGEKD_GPU_JOBS="${EDGEKD_GPU_JOBS_KD:-9}" bash benchmarks/gpu_distill.sh &
kd=$!
(
  # wait for kd_quality.py to start (its teachers are then trained and cached for search_quality.py too)
  until grep -q "start: kd_quality (" "$OUT/gpu_distill.log" 2>/dev/null; do
    kill -0 "$kd" 2>/dev/null || break
    sleep 2
  done
  EDGEKD_GPU_JOBS="${EDGEKD_GPU_JOBS_SEARCH:-7}" bash benchmarks/gpu_search.sh > /dev/null
) &
search=$!
wait "$kd"; rc_kd=$?
wait "$search"; rc_search=$?
# the hard set's teacher, trained here in seconds, saves a CPU host hours: put it in its edgekd cache folder
cp -f "${XDG_CACHE_HOME:-$HOME/.cache}"/edgekd/teacher-shapes-*.safetensors "$OUT/" 2>/dev/null
echo "gpu_session: gpu_distill.sh rc=$rc_kd, gpu_search.sh rc=$rc_search; files: $(ls "$OUT" | tr '\n' ' ')"
tail -n 60 "$OUT/gpu_search.log" 2>/dev/null
