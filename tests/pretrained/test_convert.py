"""Checkpoint conversion: parity with MAE-DFER's and Hugging Face's PyTorch outputs, full-size key sets, bad files.

The reference fixtures (tests/fixtures/mae_dfer, see the README there) were made with MAE-DFER's own code.
Hugging Face models are built here from a small random config; those tests skip without torch and transformers.
"""

import hashlib
import json
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mtcae_jax import models
from mtcae_jax.configs import default
from mtcae_jax.models import decoders, lgi_former, mtcae, vit
from mtcae_jax.pretrained import convert
from mtcae_jax.pretrained import converted as converted_lib
from mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'mae_dfer')
COMMAND = ['-m', 'mtcae_jax.pretrained']
TOOL = [os.path.join(ROOT, 'tools', 'convert_checkpoint.py')]  # the old name, a wrapper of the command


def fixture(name):
  io = np.load(os.path.join(FIXTURES, f'{name}_io.npz'))
  video = ((io['frames_uint8'] / 255.0 - io['mean']) / io['std']).astype(np.float32)
  return os.path.join(FIXTURES, f'{name}.pth'), jnp.asarray(video), io


def assert_parity(out, ref, keys):
  for k in keys:
    assert out[k].shape == ref[k].shape, k
    err = np.abs(np.asarray(out[k]) - ref[k]).max()
    assert err <= 1e-4 * np.abs(ref[k]).max(), f'{k}: max-abs error {err} vs reference max {np.abs(ref[k]).max()}'


def start_tool(*args, command=None):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, *(command or COMMAND), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def finish(process):
  stdout, stderr = process.communicate(timeout=300)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_tool(*args, command=None):
  return finish(start_tool(*args, command=command))


def write_safetensors(path, tensors):
  """A safetensors file from {name: array or (shape, dtype) of zeros}; zeros are streamed, never allocated whole."""
  codes = {np.dtype(np.float32): 'F32', np.dtype(np.float16): 'F16'}
  header, pos = {}, 0
  for name, t in tensors.items():
    shape, dtype = (t.shape, t.dtype) if isinstance(t, np.ndarray) else (t[0], np.dtype(t[1]))
    size = int(np.prod(shape)) * dtype.itemsize
    header[name] = {'dtype': codes[dtype], 'shape': list(shape), 'data_offsets': [pos, pos + size]}
    pos += size
  raw = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(len(raw).to_bytes(8, 'little') + raw)
    zeros = bytes(1 << 22)
    for name, t in tensors.items():
      if isinstance(t, np.ndarray):
        f.write(np.ascontiguousarray(t).tobytes())
      else:
        left = header[name]['data_offsets'][1] - header[name]['data_offsets'][0]
        while left:
          f.write(zeros[:min(left, len(zeros))])
          left -= min(left, len(zeros))
  return path


# ---------------------------------------------------------------------------------------------------------------
# MAE-DFER reference fixtures.

@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """The two fixtures converted once: name -> output directory."""
  out = {}
  for name in ('lgi_tiny_finetune', 'vit_tiny_finetune'):
    out[name] = str(tmp_path_factory.mktemp('converted') / name)
    convert.convert_checkpoint(fixture(name)[0], out[name], num_heads=4)
  return out


@pytest.mark.parametrize('name,keys', [
    ('lgi_tiny_finetune', ('tokens', 'region_tokens', 'pooled', 'logits')),
    ('vit_tiny_finetune', ('tokens', 'pooled', 'logits')),
])
def test_fixture_parity(converted, name, keys):
  _, video, ref = fixture(name)
  model = converted_lib.load_converted(converted[name])
  graphdef, state = nnx.split(model)
  out = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v))(state, video)
  assert_parity(out, ref, keys)
  assert set(out) == set(keys)


def test_fixture_metadata(converted):
  meta = converted_lib.read_config(converted['lgi_tiny_finetune'])
  assert meta['format'] == 'mae_dfer_finetune' and 'LGI-Former' in meta['description']
  assert meta['encoder'] == dict(name='lgi_former', width=64, depth=2, num_heads=4, mlp_dim=256, patch_size=16,
                                 tubelet_size=2, num_frames=16, image_size=160, region_size=[2, 5, 10],
                                 qkv_bias=True, drop_path=0.0, ln_eps=1e-6, pool='region', decoder_tokens='local')
  assert meta['fc_norm'] and meta['num_classes'] == 7 and meta['dropped_keys'] == [] == meta['missing_keys']
  assert meta['sizes_from'] == {'num_heads': 'flag', 'image_size': 'args', 'num_frames': 'args',
                                'region_size': 'MAE-DFER default'}
  with open(fixture('lgi_tiny_finetune')[0], 'rb') as f:
    assert meta['source_sha256'] == hashlib.sha256(f.read()).hexdigest()
  vit_meta = converted_lib.read_config(converted['vit_tiny_finetune'])
  assert vit_meta['format'] == 'mae_dfer_finetune' and vit_meta['encoder']['name'] == 'vit'


@pytest.mark.parametrize('name, command', [('lgi_tiny_finetune', COMMAND), ('vit_tiny_finetune', TOOL)])
def test_tool_converts_each_fixture(name, command, tmp_path):
  # The saved args give input size and frames; they cannot give the heads of these small widths.
  result = run_tool(f'--src={fixture(name)[0]}', f'--out={tmp_path / "out"}', '--num_heads=4', command=command)
  assert result.returncode == 0, result.stderr
  assert 'MAE-DFER fine-tuned checkpoint' in result.stdout and 'num_heads 4 (flag)' in result.stdout
  assert os.path.exists(tmp_path / 'out' / 'config.json')


def test_tool_asks_for_the_heads_it_cannot_know_and_refuses_disagreeing_flags(tmp_path):
  src = fixture('lgi_tiny_finetune')[0]
  result = run_tool(f'--src={src}', f'--out={tmp_path / "a"}')
  assert result.returncode == 2 and result.stderr.count('\n') == 1 and '--num_heads' in result.stderr
  result = run_tool(f'--src={src}', f'--out={tmp_path / "b"}', '--num_heads=4', '--image_size=224')
  assert result.returncode == 2 and result.stderr.count('\n') == 1
  assert "--image_size=224 disagrees with the checkpoint's args (image_size=160)" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# init_from: a converted encoder in an MTCAE model.

def mtcae_with(encoder, strategy, init_from=''):
  config = default.get_config(f'strategy={strategy}')
  config.init_from = init_from
  return config, mtcae.MTCAE(encoder, strategy=strategy, decoder_cfg=decoders.DecoderConfig(depth=1, width=16),
                             head_cfg=config.model.head, num_classes=7, num_landmarks=5, rngs=nnx.Rngs(7))


def test_init_from_makes_stl_mae_dfer_s_classifier(converted):
  """stl on the region tokens, started from the converted fine-tuned LGI-Former, gives MAE-DFER's logits."""
  _, video, ref = fixture('lgi_tiny_finetune')
  cfg = lgi_former.LGIConfig(width=64, depth=2, num_heads=4, mlp_dim=256, decoder_tokens='region')
  config, model = mtcae_with(lgi_former.LGIFormer(cfg, rngs=nnx.Rngs(3)), 'stl', converted['lgi_tiny_finetune'])
  assert converted_lib.maybe_init_from(model, config) == ['encoder', 'fc_norm', 'head']
  graphdef, state = nnx.split(model)
  out = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v))(state, video)
  assert_parity({'logits': out['logits']}, ref, ['logits'])


def test_init_from_loads_the_encoder_of_any_strategy(converted):
  _, video, ref = fixture('vit_tiny_finetune')
  cfg = vit.ViTConfig(width=64, depth=2, num_heads=4, mlp_dim=256, image_size=64)
  config, model = mtcae_with(vit.VideoViT(cfg, rngs=nnx.Rngs(3)), 'cascaded', converted['vit_tiny_finetune'])
  assert converted_lib.maybe_init_from(model, config) == ['encoder']
  graphdef, state = nnx.split(model.encoder)
  assert_parity({'tokens': jax.jit(lambda s, v: nnx.merge(graphdef, s)(v))(state, video)}, ref, ['tokens'])
  assert converted_lib.maybe_init_from(model, default.get_config()) == []  # init_from unset: nothing happens


def test_init_from_a_different_encoder_names_the_fields(converted):
  config = default.get_config('variant=tiny,strategy=stl')
  config.num_frames, config.image_size = 16, 64
  model = models.abstract_model(config)  # the check comes before any weight is touched
  with pytest.raises(ValueError, match=r'width 64 \(converted\) vs 32 \(model.encoder.variant\)') as e:
    converted_lib.load_encoder_into(model, converted['vit_tiny_finetune'])
  assert 'num_heads 4 (converted) vs 2' in str(e.value) and 'image_size' not in str(e.value)
  with pytest.raises(ValueError, match="'lgi_former', model.encoder.name is 'vit'"):
    converted_lib.load_encoder_into(model, converted['lgi_tiny_finetune'])


# ---------------------------------------------------------------------------------------------------------------
# The other original layouts, made from the fixtures' tensors.

def test_mae_dfer_pretrain_layout_drops_the_decoder(tmp_path):
  _, video, ref = fixture('lgi_tiny_finetune')
  sd = {'encoder.' + k: v for k, v in fixture_tensors('lgi_tiny_finetune').items() if not k.startswith(('fc_', 'head'))}
  zeros = lambda *shape: np.zeros(shape, np.float32)
  sd.update({'encoder.norm.weight': zeros(64), 'encoder.norm.bias': zeros(64),
             'encoder_to_decoder.weight': zeros(32, 64), 'mask_token': zeros(1, 1, 32)})
  src = write_safetensors(str(tmp_path / 'pretrain.safetensors'), sd)
  meta = convert.convert_checkpoint(src, str(tmp_path / 'out'), num_heads=4, image_size=160, num_frames=16)
  assert meta['format'] == 'mae_dfer_pretrain' and not meta['fc_norm']
  assert meta['dropped_keys'] == ['encoder.norm.bias', 'encoder.norm.weight', 'encoder_to_decoder.weight', 'mask_token']
  out = converted_lib.load_converted(str(tmp_path / 'out'))(video)
  assert set(out) == {'tokens', 'region_tokens', 'pooled'}
  assert_parity(out, ref, ['tokens', 'region_tokens'])
  np.testing.assert_allclose(out['pooled'], out['region_tokens'].mean(1), atol=1e-6)  # no fc_norm: plain mean


@pytest.mark.parametrize('layout', ['module', 'ddp', 'bfloat16'])
def test_videomae_layouts_and_half_precision(tmp_path, layout):
  torch = pytest.importorskip('torch')
  _, video, ref = fixture('vit_tiny_finetune')
  sd = {k: torch.from_numpy(v) for k, v in fixture_tensors().items()}
  if layout == 'module':  # VideoMAE's released fine-tuned checkpoints
    obj = {'module': sd}
  elif layout == 'ddp':  # saved from a DistributedDataParallel wrapper
    obj = {'model': {'module.' + k: v for k, v in sd.items()}, 'epoch': 3}
  else:
    obj = {'model': {k: v.to(torch.bfloat16) for k, v in sd.items()}}
  torch.save(obj, tmp_path / 'ckpt.pth')
  meta = convert.convert_checkpoint(str(tmp_path / 'ckpt.pth'), str(tmp_path / 'out'), num_heads=4, image_size=64,
                                    num_frames=16)
  assert meta['format'] == 'videomae_finetune'
  model = converted_lib.load_converted(str(tmp_path / 'out'))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model)))
  out = model(video)
  if layout == 'bfloat16':  # the weights are rounded to 8 bits of mantissa: close, not equal
    assert np.abs(np.asarray(out['logits']) - ref['logits']).max() < 0.05 * np.abs(ref['logits']).max()
  else:
    assert_parity(out, ref, ['tokens', 'pooled', 'logits'])


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face VideoMAE.

HF_SIZES = dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=64, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=128)


@pytest.fixture(scope='module')
def hf_models():
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  torch.manual_seed(0)
  config = transformers.VideoMAEConfig(**HF_SIZES, num_labels=5, layer_norm_eps=1e-12, attn_implementation='eager')
  out = {}
  for cls in (transformers.VideoMAEModel, transformers.VideoMAEForVideoClassification):
    model = cls(config).eval()
    with torch.no_grad():  # random LayerNorms and biases, so a skipped or swapped tensor shows
      for p in model.parameters():
        p.add_(0.1 * torch.randn_like(p))
    out[cls.__name__] = model
  video = torch.randn(2, 4, 3, 32, 32)  # HF takes (B, T, C, H, W)
  return torch, out, video


def hf_reference(torch, model, video):
  with torch.no_grad():
    backbone = getattr(model, 'videomae', model)
    tokens = backbone(video).last_hidden_state
    ref = {'tokens': tokens.numpy()}
    if hasattr(model, 'classifier'):
      ref['pooled'] = model.fc_norm(tokens.mean(1)).numpy()
      ref['logits'] = model(video).logits.numpy()
  return ref


def hf_state_dict(model, era, prefix):
  sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
  if era == 4:  # transformers 4 named the learned biases q_bias / v_bias
    sd = {k.replace('attention.attention.query.bias', 'attention.attention.q_bias')
           .replace('attention.attention.value.bias', 'attention.attention.v_bias'): v for k, v in sd.items()}
  else:
    assert any(k.endswith('attention.attention.query.bias') for k in sd)
  has_prefix = any(k.startswith('videomae.') for k in sd)
  if prefix and not has_prefix:
    sd = {'videomae.' + k: v for k, v in sd.items()}
  if not prefix:
    sd = {k.removeprefix('videomae.'): v for k, v in sd.items()}
  return sd


@pytest.mark.parametrize('cls', ['VideoMAEModel', 'VideoMAEForVideoClassification'])
@pytest.mark.parametrize('era', [4, 5])
@pytest.mark.parametrize('prefix', [True, False])
def test_hugging_face_parity(hf_models, tmp_path, cls, era, prefix):
  torch, models_, video = hf_models
  suffix = '.bin' if (era == 4) != prefix else '.safetensors'  # each class, era and prefix in both file types
  model = models_[cls]
  sd = hf_state_dict(model, era, prefix)
  src = str(tmp_path / f'model{suffix}')
  if suffix == '.bin':
    torch.save(sd, src)
  else:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, src)
  meta = convert.convert_checkpoint(src, str(tmp_path / 'out'), num_heads=4, image_size=32, num_frames=4)
  assert meta['format'] == 'hf_videomae' and cls in meta['description']
  assert f'transformers {era}' in meta['description'] and ('with the' in meta['description']) == prefix
  assert meta['encoder']['ln_eps'] == 1e-12 and meta['fc_norm_eps'] == 1e-5
  out = converted_lib.load_converted(str(tmp_path / 'out'))(jnp.asarray(video.permute(0, 1, 3, 4, 2).numpy()))
  ref = hf_reference(torch, model, video)
  assert_parity(out, ref, list(ref))
  assert ('logits' in out) == ('logits' in ref)


def test_hugging_face_save_pretrained_needs_no_flags(hf_models, tmp_path):
  torch, models_, video = hf_models
  models_['VideoMAEForVideoClassification'].save_pretrained(tmp_path / 'hf')
  src = next(str(p) for p in (tmp_path / 'hf').iterdir() if p.suffix in ('.safetensors', '.bin'))
  result = run_tool(f'--src={src}', f'--out={tmp_path / "out"}')
  assert result.returncode == 0, result.stderr
  meta = converted_lib.read_config(str(tmp_path / 'out'))
  assert set(meta['sizes_from'].values()) == {'Hugging Face config.json'}
  assert (meta['encoder']['num_heads'], meta['encoder']['image_size'], meta['encoder']['num_frames']) == (4, 32, 4)


# ---------------------------------------------------------------------------------------------------------------
# Full-size key sets, as zeros of the real shapes.

def vit_l16_pretrain_keys():
  """VideoMAE ViT-L/16 pre-training layout, float16: the encoder under `encoder.`, a decoder beside it."""
  d, f16 = 1024, np.float16
  keys = {'encoder.patch_embed.proj.weight': ((d, 3, 2, 16, 16), f16), 'encoder.patch_embed.proj.bias': ((d,), f16)}
  for i in range(24):
    b = f'encoder.blocks.{i}.'
    keys.update({b + 'norm1.weight': ((d,), f16), b + 'norm1.bias': ((d,), f16),
                 b + 'attn.qkv.weight': ((3 * d, d), f16), b + 'attn.q_bias': ((d,), f16),
                 b + 'attn.v_bias': ((d,), f16), b + 'attn.proj.weight': ((d, d), f16),
                 b + 'attn.proj.bias': ((d,), f16),
                 b + 'norm2.weight': ((d,), f16), b + 'norm2.bias': ((d,), f16),
                 b + 'mlp.fc1.weight': ((4 * d, d), f16), b + 'mlp.fc1.bias': ((4 * d,), f16),
                 b + 'mlp.fc2.weight': ((d, 4 * d), f16), b + 'mlp.fc2.bias': ((d,), f16)})
  keys.update({'encoder.norm.weight': ((d,), f16), 'encoder.norm.bias': ((d,), f16),
               'encoder_to_decoder.weight': ((512, d), f16), 'mask_token': ((1, 1, 512), f16),
               'decoder.head.weight': ((1536, 512), f16), 'decoder.head.bias': ((1536,), f16)})
  return keys


def lgi_512_finetune_keys():
  """MAE-DFER's LGI/512 fine-tuned layout (depth 16, 7 classes), float32."""
  d, f32 = 512, np.float32
  keys = {'lg_region_tokens': ((8, d), f32), 'patch_embed.proj.weight': ((d, 3, 2, 16, 16), f32),
          'patch_embed.proj.bias': ((d,), f32)}
  for i in range(16):
    b = f'blocks.{i}.'
    for a in ('first_attn', 'second_attn', 'third_attn'):
      keys.update({f'{b}{a}.q_bias': ((d,), f32), f'{b}{a}.v_bias': ((d,), f32), f'{b}{a}.q.weight': ((d, d), f32),
                   f'{b}{a}.kv.weight': ((2 * d, d), f32), f'{b}{a}.proj.weight': ((d, d), f32),
                   f'{b}{a}.proj.bias': ((d,), f32)})
    for n in ('first_attn_norm0', 'second_attn_norm0', 'third_attn_norm0', 'third_attn_norm1', 'norm2'):
      keys.update({f'{b}{n}.weight': ((d,), f32), f'{b}{n}.bias': ((d,), f32)})
    keys.update({b + 'mlp.fc1.weight': ((4 * d, d), f32), b + 'mlp.fc1.bias': ((4 * d,), f32),
                 b + 'mlp.fc2.weight': ((d, 4 * d), f32), b + 'mlp.fc2.bias': ((d,), f32)})
  keys.update({'fc_norm.weight': ((d,), f32), 'fc_norm.bias': ((d,), f32), 'head.weight': ((7, d), f32),
               'head.bias': ((7,), f32)})
  return keys


@pytest.mark.parametrize('keys,count,fmt,heads,size', [
    (vit_l16_pretrain_keys, 303_858_688, 'videomae_pretrain', 16, 224),
    (lgi_512_finetune_keys, 84_873_728, 'mae_dfer_finetune', 8, 160),
])
def test_full_size_key_sets(tmp_path, keys, count, fmt, heads, size):
  src = write_safetensors(str(tmp_path / 'full.safetensors'), keys())
  meta = convert.convert_checkpoint(src, str(tmp_path / 'out'))
  os.remove(src)
  assert meta['encoder_params'] == count and meta['format'] == fmt
  e = meta['encoder']
  assert (e['num_heads'], e['image_size'], e['num_frames']) == (heads, size, 16)
  if fmt == 'videomae_pretrain':
    assert meta['dropped_keys'] == ['decoder.head.bias', 'decoder.head.weight', 'encoder.norm.bias',
                                    'encoder.norm.weight', 'encoder_to_decoder.weight', 'mask_token']
    assert meta['missing_keys'] == ['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias']
  else:
    assert meta['num_classes'] == 7 and meta['missing_keys'] == []
  abstract = nnx.eval_shape(lambda: converted_lib.abstract_encoder(meta))
  assert sum(v.size for v in jax.tree.leaves(nnx.state(abstract.encoder, nnx.Param))) == count


# ---------------------------------------------------------------------------------------------------------------
# Bad files: one line on stderr naming the problem, exit code 2.

def fixture_tensors(name='vit_tiny_finetune'):
  return dict(load_checkpoint(fixture(name)[0])['model'])


def hostile_zip(path, marker):
  class Attack:
    def __reduce__(self):
      return (os.system, (f'touch {marker}',))
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', pickle.dumps({'model': Attack()}, protocol=2))
    zf.writestr('archive/version', '3\n')
  return path


def bad_files(tmp):
  """name -> (the file, extra flags, words the one-line error must contain)."""
  sizes = ['--num_heads=4', '--image_size=64', '--num_frames=16']
  with open(tmp / 'notes.txt', 'w') as f:
    f.write('these are not weights\n')
  with open(fixture('vit_tiny_finetune')[0], 'rb') as f:
    data = f.read()
  with open(tmp / 'truncated.pth', 'wb') as f:
    f.write(data[:len(data) // 2])
  with open(tmp / 'bare.pkl', 'wb') as f:
    f.write(pickle.dumps({'a': 1}, protocol=2))
  missing = fixture_tensors()
  del missing['blocks.1.mlp.fc2.weight']
  wrong = fixture_tensors()
  wrong['blocks.0.attn.proj.weight'] = np.zeros((64, 32), np.float32)
  return {
      'not a checkpoint': (str(tmp / 'notes.txt'), [], ['not a checkpoint']),
      'bare pickle': (str(tmp / 'bare.pkl'), [], ['not a checkpoint']),
      'truncated': (str(tmp / 'truncated.pth'), [], ['truncated']),
      'hostile pickle': (hostile_zip(tmp / 'hostile.pth', tmp / 'pwned'), [], ['refused', 'system']),
      'missing key': (write_safetensors(str(tmp / 'missing.safetensors'), missing), sizes,
                      ["missing encoder tensor 'blocks.1.mlp.fc2.weight'"]),
      'wrong shape': (write_safetensors(str(tmp / 'wrong.safetensors'), wrong), sizes,
                      ["'blocks.0.attn.proj.weight' has shape (64, 32), expected (64, 64)"]),
      'unknown architecture': (write_safetensors(str(tmp / 'resnet.safetensors'), {
          'conv1.weight': np.zeros((8, 3, 3, 3), np.float32), 'fc.weight': np.zeros((2, 8), np.float32)}), [],
          ['unknown architecture']),
  }


def test_bad_files_are_one_line_errors_with_exit_code_2(tmp_path):
  cases = bad_files(tmp_path)
  running = {name: start_tool(f'--src={src}', f'--out={tmp_path / "out"}', *flags)
             for name, (src, flags, _) in cases.items()}
  for name, (_, _, words) in cases.items():
    result = finish(running[name])
    assert result.returncode == 2, (name, result.stdout, result.stderr)
    assert result.stderr.count('\n') == 1 and result.stderr.startswith('error: '), (name, result.stderr)
    assert all(w in result.stderr for w in words), (name, result.stderr)
    assert result.stdout == '' and not os.path.exists(tmp_path / 'out'), name
  assert not os.path.exists(tmp_path / 'pwned')  # the hostile pickle's os.system never ran


def test_the_api_raises_checkpoint_errors(tmp_path):
  src = bad_files(tmp_path)['wrong shape'][0]
  with pytest.raises(CheckpointError, match='has shape'):
    convert.convert_checkpoint(src, str(tmp_path / 'out'), num_heads=4, image_size=64, num_frames=16)
  with pytest.raises(CheckpointError, match='not empty'):
    convert.convert_checkpoint(src, str(tmp_path))
