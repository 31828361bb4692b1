"""Identical layers stacked along a leading axis: created with `nnx.vmap`, run with `nnx.scan` or unrolled.

Both ways of running use the same stacked weights, so a checkpoint does not depend on `model.layer_loop`.
"""

import jax
from flax import nnx

REMAT_POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.checkpoint_dots,
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


LAYER_LOOPS = ('auto', 'scan', 'unroll')


def scan_layers(layer_loop):
  """Whether `model.layer_loop` scans: 'auto' unrolls on GPUs, where a scan stacks every layer's saved
  activations with extra copies (measured: docs/BENCHMARKS.md#gpu-h100-measured-2026-11-26)."""
  if layer_loop not in LAYER_LOOPS:
    raise ValueError(f'model.layer_loop must be one of {LAYER_LOOPS}, got {layer_loop!r}')
  return layer_loop == 'scan' or (layer_loop == 'auto' and jax.default_backend() != 'gpu')


def make_stack(factory, depth, rngs):
  """`depth` layers `factory(rngs)` with independent initialisations, stacked along axis 0."""
  # Without PARTITION_NAME: None the logical axis names of stacked kernels land on the wrong dimension.
  @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: None})
  def make(r):
    return factory(r)
  return make(rngs.split(depth))


def apply_stack(stack, x, *args, per_layer=None, scan=True, remat='none'):
  """x = layer_i(x, *args, **per_layer[i]) for each layer i; `per_layer` holds arrays with a leading depth axis."""
  if remat not in REMAT_POLICIES:
    raise ValueError(f'remat must be one of {sorted(REMAT_POLICIES)}, got {remat!r}')
  per_layer = per_layer or {}

  def body(x, layer, args, sliced):
    return layer(x, *args, **sliced)

  if remat != 'none':
    body = nnx.remat(body, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
  if scan:
    return nnx.scan(body, in_axes=(nnx.Carry, 0, None, 0), out_axes=nnx.Carry)(x, stack, args, per_layer)
  graphdef, state = nnx.split(stack)
  for i in range(jax.tree.leaves(state)[0].shape[0]):
    take = lambda a: a[i]
    x = body(x, nnx.merge(graphdef, jax.tree.map(take, state)), args, jax.tree.map(take, per_layer))
  return x


def layer_keys(key, depth):
  """Per-layer dropout keys, or None (deterministic) when `key` is None."""
  return None if key is None else jax.random.split(key, depth)
