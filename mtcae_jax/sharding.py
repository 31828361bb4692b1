"""The device mesh and where parameters and batches live on it.

Parameters carry logical axis names (see `models/layers.py`); `RULES` maps them onto the mesh axes: model width
('embed') over `fsdp`, attention heads and MLP hidden units over `tensor`, the batch over `data` x `fsdp`. On one
device every axis has size 1 and all of this is a no-op, so the same code runs on a laptop and a TPU pod.
"""

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')
RULES = (('embed', 'fsdp'), ('heads', 'tensor'), ('mlp', 'tensor'))


def make_mesh(shape=(-1, 1, 1), devices=None):
  """A mesh over `AXES`; one -1 in `shape` takes the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  shape = list(shape)
  if len(shape) != len(AXES) or shape.count(-1) > 1:
    raise ValueError(f'mesh shape must give {len(AXES)} sizes for {AXES} with at most one -1, got {shape}')
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    shape[shape.index(-1)] = len(devices) // known
  needed = int(np.prod(shape))
  if needed > len(devices) or needed < 1:
    raise ValueError(f'mesh shape {tuple(shape)} for axes {AXES} needs {needed} devices; '
                     f'{len(devices)} available')
  devices = devices[:needed]  # a mesh given in full may use fewer devices than there are
  # Auto axes: with the default Explicit axes, fsdp-sharded kernels fail inside matmuls.
  return jax.make_mesh(tuple(shape), AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES),
                       devices=devices)


def batch_sharding(mesh, global_batch_size=None):
  """Leading (batch) axis split over the mesh's batch axes (data x fsdp), the rest replicated. Given the global
  batch size, checks that it divides over those shards and over the processes that each load a part of it."""
  axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
  shards = int(np.prod([mesh.shape[a] for a in axes]))
  if global_batch_size is not None and (global_batch_size % shards or global_batch_size % jax.process_count()):
    raise ValueError(f'global batch {global_batch_size} must divide over {shards} batch shards and '
                     f'{jax.process_count()} processes')
  return NamedSharding(mesh, P(axes))


def replicated(mesh):
  return NamedSharding(mesh, P())


def state_shardings(abstract_state, mesh):
  """NamedShardings for an (abstract) nnx state, from its logical annotations and `RULES`."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
    return nnx.get_named_sharding(abstract_state, mesh)


def abstract_sharded(make, mesh):
  """(graphdef, abstract state, shardings) of `make()`: its shapes and where they go, with nothing allocated."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    return graphdef, abstract, nnx.get_named_sharding(abstract, mesh)


def create_sharded(make, mesh):
  """(graphdef, state, shardings) of `make()`, with the state created directly in its shards (no host copy)."""
  graphdef, _, shardings = abstract_sharded(make, mesh)
  with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
    state = jax.jit(lambda: nnx.state(make()), out_shardings=shardings)()
  return graphdef, state, shardings
