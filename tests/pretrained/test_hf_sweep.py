"""A sweep of tiny Hugging Face VideoMAE models (issue 16): each is built with random weights from a VideoMAEConfig
and saved with save_pretrained; the converter takes it with no flags. Every configuration it accepts must give
transformers' own outputs within 1e-4 relative; every one it refuses must say why in one line.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from mtcae_jax.pretrained import convert
from mtcae_jax.pretrained import converted as converted_lib
from mtcae_jax.pretrained.torch_reader import CheckpointError

BASE = dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=128, layer_norm_eps=1e-12, hidden_act='gelu',
            use_mean_pooling=True, qkv_bias=True)

# name -> (config changes, classifier?, None when accepted else words of the refusal)
CASES = {
    'base': ({}, True, None),
    'encoder only': ({}, False, None),
    'no qkv bias': (dict(qkv_bias=False), True, None),
    'tubelet 1': (dict(tubelet_size=1), True, None),
    'patch 8': (dict(patch_size=8), True, None),
    'frames 6, tubelet 3': (dict(num_frames=6, tubelet_size=3), True, None),
    'eps 1e-6': (dict(layer_norm_eps=1e-6), True, None),
    'square pair': (dict(image_size=[32, 32]), True, None),
    'first token classifier': (dict(use_mean_pooling=False), True, None),
    'first token encoder': (dict(use_mean_pooling=False), False, None),
    'gelu_python': (dict(hidden_act='gelu_python'), True, None),  # exact GELU too
    'relu': (dict(hidden_act='relu'), True, "hidden_act='relu' is not implemented"),
    'silu': (dict(hidden_act='silu'), False, "hidden_act='silu' is not implemented"),
    'quick_gelu': (dict(hidden_act='quick_gelu'), True, "hidden_act='quick_gelu' is not implemented"),
    'gelu_new': (dict(hidden_act='gelu_new'), True, "hidden_act='gelu_new' is not implemented"),
    'gelu_pytorch_tanh': (dict(hidden_act='gelu_pytorch_tanh'), True, "hidden_act='gelu_pytorch_tanh'"),
    'non-square': (dict(image_size=[32, 48]), True, 'image_size=[32, 48] is not square'),
}


@pytest.fixture(scope='module')
def hf():
  return pytest.importorskip('torch'), pytest.importorskip('transformers')


def build(torch, transformers, changes, classifier, path):
  torch.manual_seed(0)
  config = transformers.VideoMAEConfig(**{**BASE, **changes}, num_labels=3, attn_implementation='eager',
                                       id2label={0: 'calm', 1: 'happy', 2: 'sad'}, label2id=None)
  cls = transformers.VideoMAEForVideoClassification if classifier else transformers.VideoMAEModel
  model = cls(config).eval()
  with torch.no_grad():  # random LayerNorms and biases, so a skipped or swapped tensor shows
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(path)
  return model, config


def reference(torch, model, config):
  """transformers' outputs: the tokens after the last block (before any final norm), pooled, logits."""
  size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
  video = torch.randn(2, config.num_frames, 3, size, size)  # HF takes (B, T, C, H, W)
  with torch.no_grad():
    out = model(video, output_hidden_states=True)
    ref = {'tokens': out.hidden_states[-1].numpy()}
    if hasattr(model, 'classifier') and config.use_mean_pooling:
      ref['pooled'] = model.fc_norm(out.hidden_states[-1].mean(1)).numpy()
      ref['logits'] = out.logits.numpy()
  return video.permute(0, 1, 3, 4, 2).numpy(), ref


@pytest.mark.parametrize('name', list(CASES))
def test_hugging_face_sweep(hf, tmp_path, name):
  torch, transformers = hf
  changes, classifier, refusal = CASES[name]
  model, config = build(torch, transformers, changes, classifier, tmp_path / 'hf')
  src = next(str(p) for p in (tmp_path / 'hf').iterdir() if p.suffix in ('.safetensors', '.bin'))
  if refusal:
    with pytest.raises(CheckpointError) as e:
      convert.convert_checkpoint(src, str(tmp_path / 'out'))
    assert refusal in str(e.value) and '\n' not in str(e.value), str(e.value)
    assert not os.path.exists(tmp_path / 'out')
    return
  meta = convert.convert_checkpoint(src, str(tmp_path / 'out'))
  assert set(meta['sizes_from'].values()) == {'Hugging Face config.json'}
  mean_pooling = config.use_mean_pooling
  assert meta['fc_norm'] == (classifier and mean_pooling)
  assert meta['class_names'] == (['calm', 'happy', 'sad'] if classifier and mean_pooling else None)
  assert bool(meta['not_converted']) == (classifier and not mean_pooling)
  video, ref = reference(torch, model, config)
  out = converted_lib.load_converted(str(tmp_path / 'out'))(jnp.asarray(video))
  assert ('logits' in out) == ('logits' in ref)
  for k, want in ref.items():
    got = np.asarray(out[k])
    assert got.shape == want.shape, k
    err = np.abs(got - want).max()
    assert err <= 1e-4 * np.abs(want).max(), f'{name} {k}: max-abs error {err} vs reference max {np.abs(want).max()}'
