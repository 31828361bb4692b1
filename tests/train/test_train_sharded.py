"""Training on 8 (fake CPU) devices: meshes (8,1,1), (4,2,1) and one device give the same losses and weights."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, os, pathlib, sys
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0'
    import jax, numpy as np
    jax.config.update('jax_default_matmul_precision', 'highest')
    from flax import nnx
    from mtcae_jax import checkpointing
    from mtcae_jax.train import loop, run_log
    from mtcae_jax import sharding
    from tests.conftest import small_config
    data_dir, out = sys.argv[1], pathlib.Path(sys.argv[2])
    result, reference = {}, None
    for name, shape in (('one', (1, 1, 1)), ('data8', (8, 1, 1)), ('data4_fsdp2', (4, 2, 1))):
      config = small_config(data_dir, num_steps=2, eval_every_steps=2, eval_views=1, batch_size=8, eval_batch_size=8,
                            mesh_shape=shape)
      loop.train_and_evaluate(config, out / name)
      ckpt = checkpointing.Checkpoints(out / name / 'checkpoints')
      _, state, _, _ = loop.restore_train_state(config, ckpt, 2, sharding.make_mesh(shape))
      model_state = state[0]
      params = [np.asarray(x) for x in jax.tree.leaves(nnx.to_pure_dict(model_state))]
      reference = reference or params
      kernel = model_state['encoder']['blocks']['mlp']['fc1']['kernel'][...]
      result[name] = {
          'losses': [r['loss'] for r in run_log.read(out / name) if r['split'] == 'train'],
          'max_param_diff': max(float(np.abs(a - b).max()) for a, b in zip(params, reference)),
          'fc1_spec': str(kernel.sharding.spec),
          'fc1_shards': len({str(s.index) for s in kernel.addressable_shards})}
    print(json.dumps(result))
''')


@pytest.mark.slow
def test_meshes_agree_and_shard_the_kernels(demo_data_dir, tmp_path):
  out = subprocess.run([sys.executable, '-c', SCRIPT, demo_data_dir, str(tmp_path)], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  one = result['one']['losses']
  assert len(one) == 2
  for name in ('data8', 'data4_fsdp2'):
    assert max(abs(a - b) for a, b in zip(result[name]['losses'], one)) < 1e-5, result
    assert result[name]['max_param_diff'] < 1e-5, result
  # (layers, embed, mlp): the width over fsdp; with fsdp=2 each kernel lives in two halves.
  assert result['data4_fsdp2']['fc1_spec'] == "P(None, 'fsdp', 'tensor')"
  assert result['data4_fsdp2']['fc1_shards'] == 2
  assert result['data8']['fc1_shards'] == 1
