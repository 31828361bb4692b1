"""Analytic FLOP counts: the matrix multiplications of a traced program, counted from its jaxpr.

Tracing compiles nothing and allocates nothing, so this works for ViT-L on a laptop. Each `dot_general` costs
2 x (output size) x (contracted size); scans multiply their body by their length, and `cond` counts its most
expensive branch. Element-wise work (softmax, norms, GELU) is not counted: it is a few percent of a transformer.
"""

import math

import jax
from jax.extend import core


def _sub_jaxprs(value):
  if isinstance(value, core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def jaxpr_flops(jaxpr):
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (lhs_contract, _), _ = eqn.params['dimension_numbers']
      lhs_shape = eqn.invars[0].aval.shape
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs_shape[d] for d in lhs_contract)
    elif name == 'cond':
      total += max(jaxpr_flops(b.jaxpr) for b in eqn.params['branches'])
    else:
      inner = sum(jaxpr_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v))
      total += inner * (eqn.params['length'] if name == 'scan' else 1)
  return total


def count_flops(fn, *args):
  """Matmul FLOPs of `fn(*args)`; args may be arrays or `jax.ShapeDtypeStruct`s."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)
