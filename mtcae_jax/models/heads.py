"""Task-specific heads, the paper's Eqs. (7)-(9): output = FC(Pool(Norm(Y))).

`norm_first=False` pools before normalising, as the authors' Keras code and VideoMAE's `fc_norm` do.
`pool='temporal'` (not in the paper) averages each tubelet slice separately and regresses the frames of that
slice from it, instead of regressing all frames from one clip-level vector.
"""

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mtcae_jax.models import layers

POOLS = ('mean', 'temporal')


class TaskHead(nnx.Module):
  """Y (B, N, D) -> (B, *out_shape). With temporal pooling out_shape is (frames, ...) and N = slices * S."""

  def __init__(self, dim, out_shape, *, pool='mean', norm_first=True, dropout_rate=0.0, num_slices=1,
               ln_eps=1e-6, dtype, rngs):
    if pool not in POOLS:
      raise ValueError(f'head pool must be one of {POOLS}, got {pool!r}')
    self.out_shape, self.pool, self.norm_first = tuple(out_shape), pool, norm_first
    self.dropout_rate, self.num_slices = dropout_rate, num_slices
    out = math.prod(self.out_shape)
    if pool == 'temporal':
      if self.out_shape[0] % num_slices:
        raise ValueError(f'temporal pooling: {self.out_shape[0]} frames do not split into {num_slices} slices')
      out //= num_slices
    self.norm = layers.layer_norm(dim, eps=ln_eps, dtype=dtype, rngs=rngs)
    self.fc = layers.dense(dim, out, ('embed', None), dtype=dtype, rngs=rngs)

  def __call__(self, y, *, key=None):
    if self.norm_first:
      y = self.norm(y)
    b = y.shape[0]
    if self.pool == 'temporal':
      y = y.reshape(b, self.num_slices, -1, y.shape[-1]).mean(axis=2)  # (B, slices, D)
    else:
      y = y.mean(axis=1)
    if not self.norm_first:
      y = self.norm(y)
    out = self.fc(layers.dropout(y, self.dropout_rate, key))
    return out.astype(jnp.float32).reshape((b,) + self.out_shape)

  def start_at(self, target):
    """Makes the head output `target` (the trailing dims of out_shape, e.g. a mean box (4,)) for every input and
    frame: the bias holds it and the kernel starts at zero. A random kernel would add to every coordinate noise
    of about the input's scale (~1), some ten times the spread of real face boxes (docs/HEADS.md)."""
    target = np.asarray(target, np.float32)
    self.fc.bias[...] = jnp.tile(target.reshape(-1), self.fc.bias.shape[0] // target.size)
    self.fc.kernel[...] = jnp.zeros_like(self.fc.kernel[...])
