#!/bin/sh
# The GPU check of issue 8, one script for one CUDA device, at most 8 minutes:
#   1. the device and the versions (device.txt);
#   2. the Triton tests with compiled (not interpreted) kernels: tests marked `triton`, which
#      run on CUDA tensors when a GPU is present (tests.txt; at most 4 minutes);
#   3. the benchmark suite with --device cuda, the two large batches included (suite.txt and
#      the suite's JSON and summary under suite/; at most 3 minutes).
# Everything goes under one folder: the first argument, or benchmarks/results/gpu_check. Where
# $OUT is set (the device tool's result folder), the folder is also packed into
# $OUT/gpu_check.tar.gz, one file to bring back.
#
#   sh benchmarks/gpu_check.sh [FOLDER]
#
# The GPU machines carry torch, triton and jax but may lack the other peers (qpth, cvxpylayers,
# jaxopt) and the internet: the package is installed without dependencies, and a peer that does
# not import leaves its rows out of the suite.
set -u
cd "$(dirname "$0")/.."
DIR=${1:-benchmarks/results/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
start=$(date +%s)
stage() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }

stage "device"
{
  nvidia-smi || true
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__); \
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  git log -1 --format='commit %H %s' 2>/dev/null || true
} > "$DIR/device.txt" 2>&1
cat "$DIR/device.txt"

stage "install (no dependencies)"
if ! $PY -m pip install -q --no-deps --no-build-isolation -e . > "$DIR/install.txt" 2>&1; then
  # No build backend there: the package's layout (backends/ and grammar/ inside optlang/) by links.
  echo "pip install failed; running from a linked copy" | tee -a "$DIR/install.txt"
  tree=$(mktemp -d)
  cp -r optlang "$tree/optlang"
  ln -s "$(pwd)/backends" "$tree/optlang/backends"
  ln -s "$(pwd)/grammar" "$tree/optlang/grammar"
  export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}"
fi

stage "CUDA tests"
timeout 240 $PY -m pytest -q -m triton -p no:cacheprovider tests/test_triton.py tests/test_shared_solvers.py \
  tests/test_sm90_resources.py > "$DIR/tests.txt" 2>&1
echo "pytest exit $?" >> "$DIR/tests.txt"
tail -n 5 "$DIR/tests.txt"

stage "suite on cuda"
timeout 180 $PY benchmarks/suite.py --device cuda --reps 20 --budget 2 --out "$DIR/suite" > "$DIR/suite.txt" 2>&1
echo "suite exit $?" >> "$DIR/suite.txt"
tail -n 30 "$DIR/suite.txt"

stage "done"
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/gpu_check.tar.gz" -C "$(dirname "$DIR")" "$(basename "$DIR")"
fi
