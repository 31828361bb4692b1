"""Conversion under hostile and broken input (issue 16, points 3-5): nonsense sizes, malformed args and config.json,
bad output paths, a failed write. Every refusal is one line (CheckpointError; `error:` and exit 2 from the command).
"""

import argparse
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mtcae_jax.pretrained import convert
from mtcae_jax.pretrained import converted as converted_lib
from mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIT = os.path.join(ROOT, 'tests', 'fixtures', 'mae_dfer', 'vit_tiny_finetune.pth')  # width 64, 64 px, 16 frames
SIZES = dict(num_heads=4, image_size=64, num_frames=16)


def tensors():
  return {k: np.asarray(v) for k, v in load_checkpoint(VIT)['model'].items()}


def safetensors(path, sd):
  codes = {np.dtype(np.float32): 'F32'}
  header, pos, blobs = {}, 0, []
  for name, a in sd.items():
    a = np.asarray(a, np.float32, order='C')  # (not ascontiguousarray: that makes a 0-d array 1-d)
    header[name] = {'dtype': codes[a.dtype], 'shape': list(a.shape), 'data_offsets': [pos, pos + a.nbytes]}
    pos += a.nbytes
    blobs.append(a.tobytes())
  raw = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(len(raw).to_bytes(8, 'little') + raw + b''.join(blobs))
  return str(path)


def refused(src, out, match, **kwargs):
  with pytest.raises(CheckpointError, match=match) as e:
    convert.convert_checkpoint(str(src), str(out), **kwargs)
  assert '\n' not in str(e.value) and 'Traceback' not in str(e.value)
  return str(e.value)


@pytest.fixture(scope='module')
def plain(tmp_path_factory):
  """The fixture's tensors as a bare safetensors file: no args, so the sizes come from the flags."""
  return safetensors(tmp_path_factory.mktemp('src') / 'vit.safetensors', tensors())


# ---------------------------------------------------------------------------------------------------------------
# Point 3: sizes.

@pytest.mark.parametrize('flags,match', [
    (dict(num_heads=-4), r'num_heads=-4 \(from flag\) must be a positive integer'),
    (dict(num_heads=0), r'num_heads=0 \(from flag\) must be a positive integer'),
    (dict(num_heads=5), r'num_heads=5 \(from flag\) does not divide the width 64'),
    (dict(image_size=0), r'image_size=0 \(from flag\) must be a positive'),
    (dict(image_size=65536), r'image_size=65536 \(from flag\) must be a multiple of the patch size 16 from 16 to 1024'),
    (dict(image_size=8), r'image_size=8 .* from 16 to 1024'),
    (dict(image_size=72), r'image_size=72 .* multiple of the patch size 16'),
    (dict(num_frames=0), r'num_frames=0 \(from flag\) must be a positive'),
    (dict(num_frames=15), r'num_frames=15 .* multiple of the tubelet size 2'),
    (dict(num_frames=100000), r'num_frames=100000 .* from 2 to 256'),
    (dict(ln_eps=-1.0), r'LayerNorm eps -1.0 is not a number between 0 and 1'),
    (dict(ln_eps=float('nan')), r'LayerNorm eps nan'),
])
def test_nonsense_flags_are_refused(plain, tmp_path, flags, match):
  refused(plain, tmp_path / 'out', match, **{**SIZES, **flags})


def with_args(path, **args):
  torch = pytest.importorskip('torch')
  base = dict(input_size=64, num_frames=16, tubelet_size=2, attn_type='joint')
  torch.save({'model': {k: torch.from_numpy(v) for k, v in tensors().items()},
              'args': argparse.Namespace(**{**base, **args})}, path)
  return str(path)


@pytest.mark.parametrize('args,match', [
    (dict(num_heads=-4), r"num_heads=-4 \(from args\) must be a positive integer"),
    (dict(input_size=0), r'image_size=0 \(from args\) must be a positive'),
    (dict(input_size=65536), r'image_size=65536 \(from args\)'),
    (dict(num_frames=0), r'num_frames=0 \(from args\)'),
    # Point 4: args of the wrong type (a TypeError in formats before).
    (dict(input_size=None), r"the checkpoint's args say input_size=None, expected an integer"),
    (dict(input_size=[64, 64]), r"args say input_size=\[64, 64\], expected an integer"),
    (dict(num_frames=None), r'args say num_frames=None, expected an integer'),
    (dict(attn_type=['joint']), r"args say attn_type=\['joint'\], expected a string"),
])
def test_nonsense_args_are_refused(tmp_path, args, match):
  src = with_args(tmp_path / 'ckpt.pth', **args)
  refused(src, tmp_path / 'out', match, num_heads=None if 'num_heads' in args else 4)


def test_zero_dimensional_tensors_are_refused(tmp_path):
  sd = tensors()
  sd['blocks.0.mlp.fc1.weight'] = np.float32(1.0).reshape(())
  refused(safetensors(tmp_path / 'fc1.safetensors', sd), tmp_path / 'out',
          r"'blocks.0.mlp.fc1.weight' has shape \(\), expected \(mlp_dim, width\)", **SIZES)
  sd = tensors()
  sd['head.weight'] = np.float32(1.0).reshape(())
  refused(safetensors(tmp_path / 'head.safetensors', sd), tmp_path / 'out',
          r"'head.weight' has shape \(\), expected \(classes, width\)", **SIZES)
  sd = tensors()
  del sd['blocks.0.norm1.weight'], sd['blocks.0.norm1.bias']
  sd = {k.replace('blocks.1.', 'blocks.7.'): v for k, v in sd.items()}  # blocks 0 and 7: no 1 to 6
  refused(safetensors(tmp_path / 'gap.safetensors', sd), tmp_path / 'out', r'no block 1 of 8', **SIZES)
  sd = {k.replace('blocks.7.', 'blocks.99999999999.'): v for k, v in sd.items()}  # no set of 10^11 indices
  refused(safetensors(tmp_path / 'huge.safetensors', sd), tmp_path / 'out', r'no block 1 of 100000000000', **SIZES)


# ---------------------------------------------------------------------------------------------------------------
# Point 3 and 4: a Hugging Face config.json beside the weights.

HF = dict(model_type='videomae', image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=64,
          num_attention_heads=4, intermediate_size=128, layer_norm_eps=1e-12, hidden_act='gelu',
          use_mean_pooling=True)


@pytest.fixture(scope='module')
def hf_weights():
  """Tiny Hugging Face VideoMAEModel weights (names only matter; values are noise): name -> array."""
  rng = np.random.default_rng(0)
  sd = {'embeddings.patch_embeddings.projection.weight': rng.normal(size=(64, 3, 2, 16, 16)),
        'embeddings.patch_embeddings.projection.bias': rng.normal(size=64)}
  for i in range(2):
    b = f'encoder.layer.{i}.'
    for part in ('query', 'key', 'value'):
      sd[f'{b}attention.attention.{part}.weight'] = rng.normal(size=(64, 64))
    sd.update({f'{b}attention.attention.q_bias': rng.normal(size=64), f'{b}attention.attention.v_bias':
               rng.normal(size=64), f'{b}attention.output.dense.weight': rng.normal(size=(64, 64)),
               f'{b}attention.output.dense.bias': rng.normal(size=64),
               f'{b}intermediate.dense.weight': rng.normal(size=(128, 64)),
               f'{b}intermediate.dense.bias': rng.normal(size=128),
               f'{b}output.dense.weight': rng.normal(size=(64, 128)), f'{b}output.dense.bias': rng.normal(size=64)})
    for n in ('layernorm_before', 'layernorm_after'):
      sd.update({f'{b}{n}.weight': rng.normal(size=64), f'{b}{n}.bias': rng.normal(size=64)})
  return sd


def hf_dir(tmp_path, weights, conf):
  os.makedirs(tmp_path / 'hf')
  with open(tmp_path / 'hf' / 'config.json', 'w') as f:
    json.dump(conf, f)
  return safetensors(tmp_path / 'hf' / 'model.safetensors', weights)


@pytest.mark.parametrize('conf,match', [
    ([], r'config.json: a JSON list, not an object'),
    ({**HF, 'layer_norm_eps': [1e-12]}, r'layer_norm_eps=\[1e-12\] is not a number between 0 and 1'),
    ({**HF, 'layer_norm_eps': 'small'}, r"layer_norm_eps='small' is not a number"),
    ({**HF, 'layer_norm_eps': 0}, r'layer_norm_eps=0 is not a number between 0 and 1'),
    ({**HF, 'hidden_act': 'relu'}, r"hidden_act='relu' is not implemented: the encoder computes exact GELU"),
    ({**HF, 'hidden_act': 'gelu_new'}, r"hidden_act='gelu_new' is not implemented"),
    ({**HF, 'hidden_act': {'name': 'gelu'}}, r"hidden_act=\{'name': 'gelu'\} is not implemented"),
    ({**HF, 'image_size': [32, 48]}, r'image_size=\[32, 48\] is not square; only square frames are implemented'),
    ({**HF, 'image_size': 'big'}, r"image_size='big' is not an integer"),
    ({**HF, 'num_frames': [4]}, r'num_frames=\[4\] is not an integer'),
    ({**HF, 'num_attention_heads': -4}, r'num_heads=-4 \(from Hugging Face config.json\) must be a positive'),
    ({**HF, 'image_size': 65536}, r'image_size=65536 \(from Hugging Face config.json\)'),
    ({**HF, 'num_frames': 0}, r'num_frames=0 \(from Hugging Face config.json\)'),
    ({**HF, 'use_mean_pooling': 'no'}, r"use_mean_pooling='no' is not true or false"),
])
def test_broken_hugging_face_config_is_refused(hf_weights, tmp_path, conf, match):
  refused(hf_dir(tmp_path, hf_weights, conf), tmp_path / 'out', match)


def test_a_square_image_size_pair_and_class_names_are_taken(hf_weights, tmp_path):
  weights = dict(hf_weights, **{'fc_norm.weight': np.ones(64), 'fc_norm.bias': np.zeros(64),
                                'classifier.weight': np.ones((3, 64)), 'classifier.bias': np.zeros(3)})
  conf = {**HF, 'image_size': [32, 32], 'id2label': {'0': 'calm', '1': 'happy', '2': 'sad'}}
  meta = convert.convert_checkpoint(hf_dir(tmp_path, weights, conf), str(tmp_path / 'out'))
  assert meta['encoder']['image_size'] == 32 and meta['class_names'] == ['calm', 'happy', 'sad']
  assert 'classes:  calm, happy, sad' in convert.summary(meta, 'out')
  from mtcae_jax.predict import trained_model  # pylint: disable=g-import-not-at-top
  assert trained_model.load(str(tmp_path / 'out')).class_names == ['calm', 'happy', 'sad']  # predict shows them
  assert trained_model.load(str(tmp_path / 'out'), class_names=['a', 'b', 'c']).class_names == ['a', 'b', 'c']


def test_a_classifier_on_the_first_token_is_said_not_converted(hf_weights, tmp_path):
  weights = dict(hf_weights, **{'layernorm.weight': np.ones(64), 'layernorm.bias': np.zeros(64),
                                'classifier.weight': np.ones((3, 64)), 'classifier.bias': np.zeros(3)})
  meta = convert.convert_checkpoint(hf_dir(tmp_path, weights, {**HF, 'use_mean_pooling': False}),
                                    str(tmp_path / 'out'))
  assert not meta['fc_norm'] and meta['num_classes'] == 0 and meta['class_names'] is None
  assert {'classifier.weight', 'layernorm.weight'} <= set(meta['dropped_keys'])
  line = next(l for l in convert.summary(meta, 'out').splitlines() if l.startswith('classifier:'))
  assert "the classifier ('classifier.weight') and the final norm were not converted" in line
  assert 'use_mean_pooling=false' in line and 'first token' in line


def test_a_broken_config_beside_other_weights_is_not_read(plain, tmp_path):
  # formats reads config.json only for Hugging Face weights: a stray one beside a VideoMAE file changes nothing.
  weights = safetensors(tmp_path / 'vit.safetensors', tensors())
  with open(tmp_path / 'config.json', 'w') as f:
    f.write('[]')
  assert convert.convert_checkpoint(weights, str(tmp_path / 'out'), **SIZES)['encoder']['width'] == 64


def test_a_broken_converted_config_is_refused_when_read(plain, tmp_path):
  out = tmp_path / 'out'
  convert.convert_checkpoint(plain, str(out), **SIZES)
  meta = converted_lib.read_config(str(out))
  for bad, match in [([], 'is not an object'), ({**meta, 'encoder': {**meta['encoder'], 'image_size': 65536}},
                                                 'encoder.image_size=65536'),
                     ({**meta, 'encoder': {**meta['encoder'], 'num_heads': -4}}, 'encoder.num_heads=-4'),
                     ({**meta, 'class_names': ['a']}, 'class_names that are not 7 strings')]:
    with open(out / 'config.json', 'w') as f:
      json.dump(bad, f)
    with pytest.raises(CheckpointError, match=match):
      converted_lib.load_converted(str(out))


# ---------------------------------------------------------------------------------------------------------------
# Point 4: the output path, checked before the checkpoint is read (the source here does not even exist).

def test_bad_output_paths_are_refused_before_the_load(tmp_path):
  missing = tmp_path / 'no_such_checkpoint.pth'
  (tmp_path / 'file').write_text('x')
  os.symlink(tmp_path / 'nowhere', tmp_path / 'dangling')
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'x').write_text('x')
  for out, match in [(tmp_path / 'file', 'exists and is not a directory'),
                     (tmp_path / 'dangling', 'is a dangling symbolic link'),
                     (tmp_path / 'file' / 'out', 'file is not a directory'),
                     (tmp_path / 'file' / 'a' / 'b', 'file is not a directory'),
                     (tmp_path / 'full', 'exists and is not empty'),
                     ('', 'the output path is empty')]:
    refused(missing, out, match)
  assert (tmp_path / 'file').read_text() == 'x' and os.listdir(tmp_path / 'full') == ['x']


def test_an_empty_directory_or_a_link_to_one_is_filled(plain, tmp_path):
  (tmp_path / 'empty').mkdir()
  os.symlink(tmp_path / 'empty', tmp_path / 'link')
  convert.convert_checkpoint(plain, str(tmp_path / 'link'), **SIZES)
  assert os.path.islink(tmp_path / 'link') and converted_lib.read_config(str(tmp_path / 'link'))
  convert.convert_checkpoint(plain, str(tmp_path / 'a' / 'b' / 'new'), **SIZES)  # parents are made
  assert converted_lib.load_converted(str(tmp_path / 'a' / 'b' / 'new'))


# ---------------------------------------------------------------------------------------------------------------
# Point 5: a failed write leaves nothing, and the rerun works.

def test_a_failed_write_leaves_nothing_behind(plain, tmp_path, monkeypatch):
  class FullDisk:
    def __init__(self):
      pass

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return False

    def save(self, path, state):
      os.makedirs(path + '.orbax-checkpoint-tmp')
      with open(os.path.join(path + '.orbax-checkpoint-tmp', 'part'), 'w') as f:
        f.write('half')
      raise OSError(errno.ENOSPC, 'No space left on device')

  out = tmp_path / 'out' / 'converted'
  with monkeypatch.context() as m:
    m.setattr(convert.ocp, 'StandardCheckpointer', FullDisk)
    message = refused(plain, out, 'writing failed, nothing was written: No space left on device', **SIZES)
  assert str(out) in message
  assert os.listdir(tmp_path / 'out') == []  # no partial directory, no temporary sibling
  convert.convert_checkpoint(plain, str(out), **SIZES)  # the rerun works
  assert os.listdir(tmp_path / 'out') == ['converted'] and converted_lib.load_converted(str(out))


# ---------------------------------------------------------------------------------------------------------------
# The command: each of these is one `error:` line and exit status 2.

def test_the_command_says_one_line(plain, hf_weights, tmp_path):
  (tmp_path / 'file').write_text('x')
  src_none = with_args(tmp_path / 'none.pth', input_size=None)
  os.makedirs(tmp_path / 'c')
  hf_list = hf_dir(tmp_path / 'c', hf_weights, [])
  flags = ['--num_heads=4', '--image_size=64', '--num_frames=16']
  cases = {'out is a file': ([f'--src={plain}', f'--out={tmp_path / "file"}', *flags], 'not a directory'),
           'empty out': ([f'--src={plain}', '--out=', *flags], 'the output path is empty'),
           'args input_size None': ([f'--src={src_none}', f'--out={tmp_path / "o1"}', '--num_heads=4'],
                                    'input_size=None'),
           'config.json []': ([f'--src={hf_list}', f'--out={tmp_path / "o2"}'], 'a JSON list'),
           'negative heads': ([f'--src={plain}', f'--out={tmp_path / "o3"}', *flags, '--num_heads=-4'],
                              'num_heads=-4')}
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  running = {name: subprocess.Popen([sys.executable, '-m', 'mtcae_jax.pretrained', *argv], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for name, (argv, _) in cases.items()}
  for name, (_, words) in cases.items():
    stdout, stderr = running[name].communicate(timeout=300)
    assert running[name].returncode == 2, (name, stderr)
    assert stderr.startswith('error: ') and stderr.count('\n') == 1 and words in stderr, (name, stderr)
    assert stdout == ''
