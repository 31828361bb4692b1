"""A converted checkpoint read back: on its own as a ConvertedEncoder, or into an MTCAE model (`config.init_from`).

    model = load_converted('converted/')                             # ConvertedEncoder
    out = model(video)                   # tokens, pooled, logits (with a head), region_tokens (LGI-Former)
    load_encoder_into(mtcae_model, 'converted/')                     # what `config.init_from` does
"""

import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
from flax import nnx

from mtcae_jax import checkpointing
from mtcae_jax.models import attention, layers, lgi_former, vit
from mtcae_jax.pretrained.torch_reader import CheckpointError

ENCODERS = {'vit': (vit.VideoViT, vit.ViTConfig), 'lgi_former': (lgi_former.LGIFormer, lgi_former.LGIConfig)}
# Encoder config fields that do not change the weights or their meaning, so a model may differ in them.
NOT_COMPARED = ('drop_path', 'decoder_tokens', 'pool')
CONFIG_KEY = {'num_frames': 'num_frames', 'image_size': 'image_size', 'ln_eps': 'model.encoder.ln_eps',
              'region_size': 'model.encoder.region_size', 'tubelet_size': 'model.encoder.tubelet_size',
              'layer_scale_init': 'model.encoder.layer_scale_init'}
# Sane bounds on the sizes read from a checkpoint or a config: beyond them a prediction would allocate without end.
MAX_IMAGE_SIZE, MAX_FRAMES, MAX_WIDTH, MAX_DEPTH = 1024, 256, 16384, 1024


def is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def size_problem(s):
  """What is wrong with the sizes `s` (width, depth, num_heads, mlp_dim, patch_size, tubelet_size, image_size,
  num_frames; any may be absent) as (field, reason), or None: positive integers that tile, within sane bounds."""
  for field in ('width', 'depth', 'num_heads', 'mlp_dim', 'patch_size', 'tubelet_size', 'image_size', 'num_frames'):
    if field in s and not (is_int(s[field]) and s[field] > 0):
      return field, 'must be a positive integer'
  get = lambda k, default=None: s.get(k, default)
  if get('width', 0) > MAX_WIDTH or get('depth', 0) > MAX_DEPTH or get('mlp_dim', 0) > 8 * MAX_WIDTH:
    field = next(k for k, top in (('width', MAX_WIDTH), ('depth', MAX_DEPTH), ('mlp_dim', 8 * MAX_WIDTH))
                 if get(k, 0) > top)
    return field, 'is beyond any released encoder'
  if 'num_heads' in s and 'width' in s and s['width'] % s['num_heads']:
    return 'num_heads', f"does not divide the width {s['width']}"
  if 'image_size' in s:
    patch = get('patch_size', 1)
    if not patch <= s['image_size'] <= MAX_IMAGE_SIZE or s['image_size'] % patch:
      return 'image_size', f'must be a multiple of the patch size {patch} from {patch} to {MAX_IMAGE_SIZE} px'
  if 'num_frames' in s:
    tubelet = get('tubelet_size', 1)
    if not tubelet <= s['num_frames'] <= MAX_FRAMES or s['num_frames'] % tubelet:
      return 'num_frames', f'must be a multiple of the tubelet size {tubelet} from {tubelet} to {MAX_FRAMES}'
  return None


def eps_ok(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value < 1


class ConvertedEncoder(nnx.Module):
  """A converted encoder with the classifier it came with: video (B, T, H, W, 3), normalised -> dict.

  `tokens` (B, N, D): after the last block, before any norm, (t, h, w) raster order (LGI-Former: the local tokens);
  `region_tokens` (B, R, D) for LGI-Former; `pooled`: fc_norm of the mean of the tokens (LGI-Former: of the tokens
  its `pool` names, the region tokens in MAE-DFER), or the plain mean without fc_norm; `logits` with a head.
  """

  def __init__(self, name, cfg, *, num_classes=0, fc_norm=False, fc_norm_eps=1e-6, impl='einsum', rngs):
    self.encoder = ENCODERS[name][0](cfg, impl=impl, rngs=rngs)
    d = cfg.width
    self.fc_norm = layers.layer_norm(d, eps=fc_norm_eps, dtype=jnp.float32, rngs=rngs) if fc_norm else None
    self.head = layers.dense(d, num_classes, ('embed', None), dtype=jnp.float32, rngs=rngs) if num_classes else None

  def __call__(self, video, *, key=None):
    if isinstance(self.encoder, lgi_former.LGIFormer):
      tokens, region = self.encoder.encode(video, key=key)
      out = {'tokens': tokens, 'region_tokens': region}
      pooled = self.encoder.pool(tokens, region)
    else:
      tokens = self.encoder(video, key=key)
      out = {'tokens': tokens}
      pooled = tokens.mean(axis=1)
    out['pooled'] = self.fc_norm(pooled) if self.fc_norm is not None else pooled
    if self.head is not None:
      out['logits'] = self.head(out['pooled'])
    return out


def abstract_encoder(meta, impl='einsum'):
  """The ConvertedEncoder that `meta` (a converted checkpoint's config.json) describes, as shapes only."""
  name = meta['encoder']['name']
  fields = {k: v for k, v in meta['encoder'].items() if k != 'name'}
  cfg = ENCODERS[name][1](**fields)
  return nnx.eval_shape(lambda: ConvertedEncoder(
      name, cfg, num_classes=meta['num_classes'], fc_norm=meta['fc_norm'], fc_norm_eps=meta['fc_norm_eps'],
      impl=impl, rngs=nnx.Rngs(0)))


def read_config(out_dir):
  """A converted checkpoint's config.json, checked: its sizes bound what loading and prediction allocate."""
  try:
    with open(os.path.join(out_dir, 'config.json')) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{os.fsdecode(out_dir)}: not a converted checkpoint (no readable config.json: {e})'
                          ) from None
  problem = _config_problem(meta)
  if problem:
    raise CheckpointError(f'{os.fsdecode(out_dir)}: not a valid converted checkpoint: config.json {problem}')
  return meta


def _config_problem(meta):
  if not isinstance(meta, dict) or not isinstance(meta.get('encoder'), dict):
    return 'is not an object with an encoder'
  e = meta['encoder']
  if e.get('name') not in ENCODERS:
    return f"names no known encoder ({str(e.get('name'))[:40]!r})"
  bad = size_problem(e)
  if bad:
    return f'encoder.{bad[0]}={str(e.get(bad[0]))[:40]} {bad[1]}'
  if not eps_ok(e.get('ln_eps', 1e-6)) or not eps_ok(meta.get('fc_norm_eps', 1e-6)):
    return 'has a LayerNorm eps that is not a number in (0, 1)'
  classes = meta.get('num_classes')
  if not is_int(classes) or classes < 0 or not isinstance(meta.get('fc_norm'), bool):
    return 'has no valid num_classes / fc_norm'
  names = meta.get('class_names')
  if names is not None and not (isinstance(names, list) and len(names) == classes
                                and all(isinstance(n, str) for n in names)):
    return f'has class_names that are not {classes} strings'
  try:
    ENCODERS[e['name']][1](**{k: v for k, v in e.items() if k != 'name'})
  except (TypeError, ValueError) as err:
    return f'has an encoder the model cannot build: {err}'
  return None


def _read_state(out_dir, abstract_state):
  """The arrays `convert_checkpoint` saved in `out_dir`, as a nested dict shaped like `abstract_state`."""
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.to_pure_dict(abstract_state))
  return checkpointing.restore_tree(os.path.join(out_dir, 'state'), target)


def load_converted(out_dir):
  """The ConvertedEncoder saved by `convert_checkpoint` in `out_dir`."""
  meta = read_config(out_dir)
  graphdef, state = nnx.split(abstract_encoder(meta, impl=attention.resolve_impl('auto', jnp.float32)))
  nnx.replace_by_pure_dict(state, _read_state(out_dir, state))
  return nnx.merge(graphdef, state)


def _mismatches(meta, encoder):
  name = next(n for n, (cls, _) in ENCODERS.items() if isinstance(encoder, cls))
  if meta['encoder']['name'] != name:
    return [f"the converted encoder is {meta['encoder']['name']!r}, model.encoder.name is {name!r}"]
  out = []
  for f in dataclasses.fields(encoder.cfg):
    ours, theirs = getattr(encoder.cfg, f.name), meta['encoder'].get(f.name)
    if f.name in NOT_COMPARED:
      continue
    if isinstance(ours, tuple):
      theirs = tuple(theirs) if theirs is not None else None
    if ours != theirs:
      out.append(f"{f.name} {theirs} (converted) vs {ours} ({CONFIG_KEY.get(f.name, 'model.encoder.variant')})")
  return out


def _assign(module, pure):
  """Set `module`'s parameters from the nested dict `pure`, keeping each parameter's dtype and sharding."""
  graphdef, state = nnx.split(module)
  current = nnx.to_pure_dict(state)
  put = lambda old, new: jax.device_put(jnp.asarray(new, old.dtype), old.sharding)
  nnx.replace_by_pure_dict(state, jax.tree.map(put, current, pure))
  nnx.update(module, state)


def load_encoder_into(model, out_dir):
  """Copy a converted encoder into `model.encoder` (any strategy); returns the names of the parts loaded.

  With the `stl` strategy, whose expression head is VideoMAE's classifier (pool, fc_norm, FC), the converted
  fc_norm goes into that head's norm, and the converted head into its FC layer when the class counts agree.
  Raises ValueError, naming the fields, when the converted encoder differs from the model's.
  """
  meta = read_config(out_dir)
  problems = _mismatches(meta, model.encoder)
  if problems:
    raise ValueError(f'{os.fsdecode(out_dir)}: the converted encoder does not match the model config: '
                     + '; '.join(problems))
  _, abstract = nnx.split(abstract_encoder(meta))
  restored = _read_state(out_dir, abstract)
  _assign(model.encoder, restored['encoder'])
  loaded = ['encoder']
  if getattr(model, 'strategy', None) == 'stl' and meta['fc_norm']:
    head = model.heads['expression']
    head.norm.epsilon = meta['fc_norm_eps']  # e.g. 1e-5 for Hugging Face's fc_norm
    _assign(head.norm, restored['fc_norm'])
    loaded.append('fc_norm')
    if head.fc.kernel.shape == restored['head']['kernel'].shape:
      _assign(head.fc, restored['head'])
      loaded.append('head')
  return loaded


def maybe_init_from(model, config):
  """`config.init_from`: when set, load that converted encoder into `model` (call after building the model)."""
  if config.get('init_from'):
    return load_encoder_into(model, config.init_from)
  return []
