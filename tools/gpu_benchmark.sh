#!/usr/bin/env bash
# The GPU figures of docs/BENCHMARKS.md in one go, on one H100 or H200 (about 6 minutes, compilation included).
#
#   tools/gpu_benchmark.sh [OUT_DIR]        # from the repository root; OUT_DIR defaults to $OUT or bench_gpu
#
# Needs a CUDA build of JAX, flax, optax, orbax-checkpoint and ml_collections; with torch and transformers the
# last run compares against PyTorch. Packages that the machine lacks can sit as wheels in .whl/ (installed here
# without a network). Each run writes OUT_DIR/<name>.json and .log; the first is the target.
set -uo pipefail
out=${1:-${OUT:-bench_gpu}}
mkdir -p "$out"
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$out/gpu.csv"
$py -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())' | tee "$out/versions.txt"

run() {  # run NAME ARGS...: one benchmark process, at most 4 minutes
  local name=$1; shift
  echo "=== $name: $*"
  timeout 240 $py tools/benchmark.py "$@" --json="$out/$name.json" 2>&1 | grep -v '^I[0-9]' | tee "$out/$name.log"
}

# The target: the paper's L/16 cascaded model, bfloat16 compute, batch 8 (cuDNN attention chosen by 'auto').
# The encoder-only (stl) step is timed in the same process.
run l16_cascaded_bf16_b8 --config=configs/default.py:variant=L/16 --config.model.dtype=bfloat16 --batch=8 --steps=10
# The decoder of the authors' public code, with the encoder trained (the preset freezes it).
run l16_paper_code_bf16_b8 --config=configs/default.py:variant=L/16,preset=paper_code \
  --config.model.encoder.frozen=False --config.model.dtype=bfloat16 --batch=8 --steps=10 --noencoder_only
# The same encoder in PyTorch (SDPA) against JAX; JAX must leave GPU memory to PyTorch here.
XLA_PYTHON_CLIENT_PREALLOCATE=false run l16_stl_bf16_b8_torch \
  --config=configs/default.py:variant=L/16,strategy=stl --config.model.dtype=bfloat16 --batch=8 --steps=10 \
  --compare=torch
ls -l "$out"
