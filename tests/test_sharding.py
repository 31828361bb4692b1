"""Sharding: on 8 fake CPU devices a sharded model gives the single-device outputs, with kernels split."""

import json
import subprocess
import sys
import textwrap

import pytest

from mtcae_jax import sharding

SCRIPT = textwrap.dedent('''
    import json, os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0'
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from mtcae_jax import models, sharding
    from tests.conftest import tiny_config
    jax.config.update('jax_default_matmul_precision', 'highest')
    config = tiny_config()
    make = lambda: models.build_model(config, rngs=nnx.Rngs(0))
    video = jax.random.normal(jax.random.key(1), (8, 4, 32, 32, 3))
    reference = make()(video)['logits']
    mesh = sharding.make_mesh((2, 2, 2))
    graphdef, state, shardings = sharding.create_sharded(make, mesh)
    batch = jax.device_put(video, sharding.batch_sharding(mesh))
    fn = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v)['logits'],
                 in_shardings=(shardings, sharding.batch_sharding(mesh)))
    out = fn(state, batch)
    qkv = state['encoder']['blocks']['attn']['qkv']['kernel'][...]
    print(json.dumps({'err': float(jnp.abs(out - reference).max()), 'qkv_spec': str(qkv.sharding.spec),
                      'qkv_shards': len({str(s.index) for s in qkv.addressable_shards}),
                      'batch_shards': len({str(s.index) for s in batch.addressable_shards})}))
''')


@pytest.mark.slow
def test_sharded_model_matches_single_device():
  out = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['err'] < 1e-5
  assert result['qkv_spec'] == "P(None, 'fsdp', 'tensor')"  # (layers, embed, heads)
  assert result['qkv_shards'] == 4 and result['batch_shards'] == 4


def test_mesh_shape_errors_are_clear():
  with pytest.raises(ValueError, match='needs 4 devices'):
    sharding.make_mesh((2, 2, 1))
  with pytest.raises(ValueError, match='at most one -1'):
    sharding.make_mesh((-1, -1, 1))
  assert sharding.make_mesh((-1, 1, 1)).shape == {'data': 1, 'fsdp': 1, 'tensor': 1}
