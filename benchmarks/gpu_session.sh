#!/usr/bin/env bash
# Everything a short GPU window should measure, in order of value, each step bounded in time; results are written
# to benchmarks/results/ (and copied to $OUT when set). Usage, from the repository root on a CUDA machine with the
# CIFAR-10 archive at ../shared/data/cifar10-jpeg.tar.gz (or DATA=path):
#     bash benchmarks/gpu_session.sh [MINUTES_FOR_PAPER_RUNS]      # default 4
# Then, on any machine: python -m benchmarks.experiments collect paper-fig3-sgd && python -m benchmarks.report
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MINUTES=${1:-4}
step() {  # step SECONDS COMMAND...: run it, bounded, and say how it ended
  local limit=$1; shift
  echo "== $* (at most ${limit}s)"
  timeout "$limit" "$@"; echo "== exit $? after: $*"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
step 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests/library/test_gpu.py
step 60 $PY -m benchmarks.bench_kernels --out benchmarks/results/kernels-cpu-check.json
step 90 $PY -m benchmarks.bench_sync --device cuda --reps 7
step 120 $PY -m benchmarks.bench_overhead --device cuda --cases stem,deit-s,resnet18,cifar-stem,vit --reps 9 --warmup 3
step 120 $PY -m benchmarks.bench_compile --device cuda --mode max-autotune-no-cudagraphs --reps 9
step 240 $PY -m benchmarks.bench_epoch --device cuda --epochs 2 --jobs 1,4 --train-size 50000
step 30 $PY -m benchmarks.experiments plan --minutes "$MINUTES"
# whole seeds of the paper's Fig. 3 protocol while the window lasts (a cut-off run resumes next time)
step $((MINUTES * 60)) $PY -m benchmarks.experiments run paper-fig3-sgd --device cuda
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/results" && cp -r benchmarks/results/*.json "$OUT/results/"
  [ -d runs ] && tar czf "$OUT/runs.tgz" --exclude=checkpoint.pt runs
fi
