#!/usr/bin/env bash
# The GPU figures of docs/BENCHMARKS.md in one go, on one H100 or H200 (about 9 minutes, compilation included).
#
#   DATA_DIR=runs/demo/data tools/gpu_benchmark.sh [OUT_DIR] [SECONDS]   # from the repository root
#
# OUT_DIR defaults to $OUT or bench_gpu. Needs a CUDA build of JAX, flax, optax, orbax-checkpoint, ml_collections,
# grain and tensorflow-datasets (no TensorFlow); with torch and transformers one run compares against PyTorch.
# Packages that the machine lacks can sit as wheels in .whl/ (installed here without a network). DATA_DIR holds the
# prepared demo dataset (`python -m mtcae_jax.main --config=configs/demo.py --workdir=runs/demo` builds it; copied
# to the machine, it needs no TensorFlow there); without it the input-pipeline runs are skipped. Each run writes
# OUT_DIR/<name>.json and .log, most important first; a run that would start with less than a minute of SECONDS
# (default 540) left is skipped, so the whole script fits a lease.
set -uo pipefail
out=${1:-${OUT:-bench_gpu}}
budget=${2:-540}
data=${DATA_DIR:-runs/demo/data}
mkdir -p "$out"
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$out/gpu.csv"
echo "cores: $(nproc)" | tee -a "$out/gpu.csv"

run() {  # run NAME ARGS...: one benchmark process, within the time left
  local name=$1; shift
  local left=$((budget - SECONDS))
  if ((left < 60)); then echo "=== $name: skipped, ${left} s left"; return; fi
  echo "=== $name: $*"
  timeout $left $py tools/benchmark.py "$@" --json="$out/$name.json" 2>&1 | grep -v '^I[0-9]' | tee "$out/$name.log"
}

# Does the host keep the GPU fed? The input pipeline alone at 16 x 224 with training augmentation (host clips/s
# by worker processes), then the L/16 and LGI/512 cascaded steps on a synthetic batch and fed by that pipeline
# (cores - 2 workers), in the same process.
if [[ -d "$data/ravdess_dfer" ]]; then
  for w in 1 4 $(($(nproc) - 2)); do
    run input_w$w --input --config=configs/demo.py --config.data_dir="$data" --config.num_frames=16 \
      --config.image_size=224 --config.input.num_workers=$w --batch=8 --steps=60
  done
  real="--config.data_dir=$data --config.model.dtype=bfloat16 --batch=8 --steps=10 --real_data --noencoder_only"
  run l16_cascaded_bf16_b8_real_data --config=configs/ravdess.py:variant=L/16 $real
  run lgi512_cascaded_bf16_b8_real_data --config=configs/ravdess.py:variant=LGI/512 $real
else
  echo "=== input pipeline runs skipped: no prepared demo dataset in $data (set DATA_DIR)"
fi

# Correctness: the attention kernels 'auto' picks on this card against float64 NumPy, forward and gradient
# (cuDNN for the encoder's 64-wide heads; the paper decoder's 512-wide heads fall back to XLA).
$py - <<'EOF' 2>&1 | grep -v '^I[0-9]' | tee "$out/attention_check.txt"
import jax, jax.numpy as jnp, numpy as np, flax
from mtcae_jax.models import attention
print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())
impl = attention.resolve_impl('auto', jnp.bfloat16)
def reference(q, k, v, g):  # float64: output and d(sum(out * g))/dq
  s = np.einsum('bnhd,bmhd->bhnm', q, k) / np.sqrt(q.shape[-1])
  p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
  out = np.einsum('bhnm,bmhd->bnhd', p, v)
  dp = np.einsum('bnhd,bmhd->bhnm', g, v)
  ds = p * (dp - (dp * p).sum(-1, keepdims=True))
  return out, np.einsum('bhnm,bmhd->bnhd', ds, k) / np.sqrt(q.shape[-1])
for name, shape in (('encoder', (2, 1568, 16, 64)), ('paper decoder', (2, 1568, 3, 512))):
  q, k, v, g = (np.random.default_rng(i).standard_normal(shape) for i in range(4))
  f = lambda q, k, v: jnp.sum(attention.attend(q, k, v, impl=impl).astype(jnp.float32) * g)
  bf = lambda x: jnp.asarray(x, jnp.bfloat16)
  out = jax.jit(lambda q, k, v: attention.attend(q, k, v, impl=impl))(bf(q), bf(k), bf(v))
  dq = jax.jit(jax.grad(f))(bf(q), bf(k), bf(v))
  ref_out, ref_dq = reference(q, k, v, g)
  rel = lambda x, r: float(np.linalg.norm(np.asarray(x, np.float64) - r) / np.linalg.norm(r))
  hlo = jax.jit(lambda q, k, v: attention.attend(q, k, v, impl=impl)).lower(bf(q), bf(k), bf(v)).as_text()
  print(f'{name} {shape} bf16, auto={impl}: cuDNN custom call {"cudnn" in hlo}, '
        f'rel. error out {rel(out, ref_out):.2e}, dq {rel(dq, ref_dq):.2e}')
EOF

# The target: the paper's L/16 cascaded model, bfloat16 compute, batch 8, the defaults for a GPU ('auto': cuDNN
# attention, unrolled layers). The encoder-only (stl) step is timed in the same process.
target="--config=configs/default.py:variant=L/16 --config.model.dtype=bfloat16 --batch=8 --steps=10"
run l16_cascaded_bf16_b8 $target
# Should cuDNN fail on this machine's libraries, the target again with XLA's attention.
[[ -s "$out/l16_cascaded_bf16_b8.json" ]] || run l16_cascaded_bf16_b8_xla $target --config.model.attention_impl=xla
# The encoder-only step with cuBLAS for every matmul instead of XLA's Triton GEMMs, against the same encoder in
# PyTorch (SDPA); JAX must leave GPU memory to PyTorch here.
XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false" \
  run l16_stl_bf16_b8_cublas_torch --config=configs/default.py:variant=L/16,strategy=stl \
  --config.model.dtype=bfloat16 --batch=8 --steps=10 --compare=torch
# The decoder of the authors' public code, with the encoder trained (the preset freezes it).
run l16_paper_code_bf16_b8 --config=configs/default.py:variant=L/16,preset=paper_code \
  --config.model.encoder.frozen=False --config.model.dtype=bfloat16 --batch=8 --steps=10 --noencoder_only
ls -l "$out"
echo "done in ${SECONDS} s"
