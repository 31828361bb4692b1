"""Small building blocks shared by the encoders, decoders and heads.

Numerics follow the PyTorch originals so ported weights give the same outputs: exact (erf) GELU, LayerNorm with
eps from config and without Flax's fast variance. Parameters carry logical axis names ('embed', 'heads', 'mlp')
that the training code maps onto mesh axes; they are created unsharded (eager sharding off) and placed
by `jax.jit(..., out_shardings=...)`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

INIT = nnx.initializers.xavier_uniform()


def logical(init, *names):
  """An initializer whose variable carries logical axis names, for sharding by rules later."""
  return nnx.with_partitioning(init, names, eager_sharding=False)


def gelu(x):
  return jax.nn.gelu(x, approximate=False)


class Dense(nnx.Linear):
  """nnx.Linear on the input flattened to 2-D: for (B, N, D) activations XLA:CPU then emits its fast matmul for
  the kernel gradient instead of a transposed copy and a slower one (measured: docs/BENCHMARKS.md#the-cpu-kernels);
  the parameters and results are nnx.Linear's."""

  def __call__(self, x):
    lead = x.shape[:-1]
    return super().__call__(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)


def dense(din, dout, names, *, dtype, rngs, use_bias=True):
  return Dense(din, dout, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
               kernel_init=logical(INIT, *names),
               bias_init=logical(nnx.initializers.zeros_init(), names[-1]), rngs=rngs)


def layer_norm(dim, *, eps, dtype, rngs):
  return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32,
                       scale_init=logical(nnx.initializers.ones_init(), 'embed'),
                       bias_init=logical(nnx.initializers.zeros_init(), 'embed'), rngs=rngs)


def dropout(x, rate, key):
  """Inverted dropout; the identity when `key` is None (evaluation) or the rate is 0."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_path(x, rate, key):
  """Stochastic depth: drops the whole residual branch per example. `rate` may be a traced per-layer value."""
  if key is None:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class Mlp(nnx.Module):
  """fc1 -> GELU -> dropout -> fc2 [-> GELU] -> dropout.

  The encoders' MLP (VideoMAE) has no activation after fc2; the authors' Keras decoder MLP has GELU after both.
  """

  def __init__(self, din, hidden, dout, *, final_gelu=False, dropout_rate=0.0, dtype, rngs):
    self.fc1 = dense(din, hidden, ('embed', 'mlp'), dtype=dtype, rngs=rngs)
    self.fc2 = dense(hidden, dout, ('mlp', 'embed'), dtype=dtype, rngs=rngs)
    self.final_gelu = final_gelu
    self.dropout_rate = dropout_rate

  def __call__(self, x, key=None):
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    x = dropout(gelu(self.fc1(x)), self.dropout_rate, k1)
    x = self.fc2(x)
    if self.final_gelu:
      x = gelu(x)
    return dropout(x, self.dropout_rate, k2)
