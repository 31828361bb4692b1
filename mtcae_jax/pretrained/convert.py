"""Convert VideoMAE / MAE-DFER / Hugging Face video encoders to this project's Flax layout (`converted.py` reads it back).

    meta = convert_checkpoint('checkpoint-99.pth', 'converted/')     # orbax state + config.json

Reading the file never runs code from it (`torch_reader`); `formats` recognises the layout and renames
everything to the original VideoMAE / MAE-DFER names. Here those names are mapped onto the Flax parameters:
Linear (out, in) -> kernel (in, out), Conv3d (O, I, T, H, W) -> tubelet kernel (T, H, W, I, O), LayerNorm
weight -> scale, and the per-block tensors are stacked along the leading depth axis of the scanned blocks.
"""

import dataclasses
import hashlib
import json
import os
import re

import numpy as np
import orbax.checkpoint as ocp
from flax import nnx, traverse_util

from mtcae_jax.models import lgi_former, vit
from mtcae_jax.pretrained import converted, formats
from mtcae_jax.pretrained.torch_reader import CheckpointError

# The heads of the released widths (VideoMAE S/B/L/H, MAE-DFER's LGI/512), from the encoders' variant tables.
KNOWN_HEADS = {width: heads for table in (vit.VARIANTS, lgi_former.VARIANTS)
               for name, (width, _, heads, _) in table.items() if name != 'tiny'}
FLAGS = {'num_heads': '--num_heads', 'image_size': '--image_size', 'num_frames': '--num_frames',
         'region_size': '--region_size'}


# ---------------------------------------------------------------------------------------------------------------
# Sizes: from shapes where they show, else from the file's args, the flags, the known widths.

def _encoder_config(src, found, overrides):
  t = found.tensors
  err = lambda msg: CheckpointError(f'{os.fsdecode(src)}: {msg}')

  def need(key):
    if key not in t:
      raise err(f"missing encoder tensor '{found.names.get(key, key)}'")
    return t[key]

  patch = need('patch_embed.proj.weight')
  if patch.ndim != 5 or patch.shape[1] != 3 or patch.shape[3] != patch.shape[4]:
    raise err(f"'{found.names.get('patch_embed.proj.weight', 'patch_embed.proj.weight')}' has shape "
              f'{patch.shape}, expected (width, 3, tubelet, patch, patch)')
  width, tubelet, patch_size = (int(s) for s in patch.shape[:1] + patch.shape[2:4])
  blocks = [int(m.group(1)) for k in t if (m := re.match(r'blocks\.(\d+)\.', k))]
  if not blocks:
    raise err('missing encoder tensors: no transformer blocks')
  mlp_dim = int(need('blocks.0.mlp.fc1.weight').shape[0])
  attn = 'attn' if found.architecture == 'vit' else 'first_attn'

  sizes, origin = {}, {}
  for field, flag in FLAGS.items():
    stated, given = found.hints.get(field), overrides.get(field)
    if given is not None and field == 'region_size':
      given = tuple(int(s) for s in given)
    if stated is not None and given is not None and stated != given:
      raise err(f'{flag}={given} disagrees with the checkpoint\'s {found.source_of_hints} '
                f'({field}={stated}); leave the flag out')
    sizes[field] = stated if stated is not None else given
    origin[field] = found.source_of_hints if stated is not None else 'flag' if given is not None else None
  if 'tubelet_size' in found.hints and found.hints['tubelet_size'] != tubelet:
    raise err(f"the checkpoint's {found.source_of_hints} say tubelet_size={found.hints['tubelet_size']} but "
              f'the patch embedding has tubelets of {tubelet} frames')
  if sizes['num_heads'] is None:
    if width not in KNOWN_HEADS:
      raise err(f'cannot tell the number of attention heads of a width-{width} encoder: pass --num_heads=N')
    sizes['num_heads'], origin['num_heads'] = KNOWN_HEADS[width], f'known width {width}'
  config_class = converted.ENCODERS[found.architecture][1]  # its defaults: the released models' input sizes
  for field, default in (('image_size', config_class.image_size), ('num_frames', config_class.num_frames)):
    if sizes[field] is None:
      if width not in KNOWN_HEADS:
        raise err(f'cannot tell the {field.replace("_", " ")} of a width-{width} encoder: pass {FLAGS[field]}=N')
      sizes[field], origin[field] = default, f'default for width {width}'

  fields = dict(width=width, depth=max(blocks) + 1, num_heads=int(sizes['num_heads']), mlp_dim=mlp_dim,
                patch_size=patch_size, tubelet_size=tubelet, num_frames=int(sizes['num_frames']),
                image_size=int(sizes['image_size']), qkv_bias=f'blocks.0.{attn}.q_bias' in t,
                ln_eps=float(overrides.get('ln_eps') or found.ln_eps))
  if found.architecture == 'vit' and sizes['region_size'] is not None:
    raise err('--region_size applies to LGI-Former checkpoints only; this is a VideoMAE ViT')
  try:
    if found.architecture == 'vit':
      cfg = vit.ViTConfig(**fields)
      cfg.grid  # validates the input size
    else:
      if sizes['region_size'] is None:
        sizes['region_size'], origin['region_size'] = lgi_former.LGIConfig.region_size, 'MAE-DFER default'
      cfg = lgi_former.LGIConfig(**fields, region_size=sizes['region_size'], pool=found.hints.get('pool', 'region'))
  except ValueError as e:
    raise err(str(e)) from None
  if found.architecture == 'lgi_former' and need('lg_region_tokens').shape[0] != cfg.num_regions:
    raise err(f"'lg_region_tokens' holds {need('lg_region_tokens').shape[0]} region tokens but region size "
              f'{cfg.region_size} on the token grid {cfg.grid} gives {cfg.num_regions}: pass --region_size=T,H,W')
  return cfg, {k: v for k, v in origin.items() if v is not None}


# ---------------------------------------------------------------------------------------------------------------
# Original names -> Flax parameters.

def _original_name(path):
  """Flax path (below `encoder` and the block axis) -> original name: patch_embed.kernel -> patch_embed.proj.weight."""
  if path[0] == 'patch_embed':
    return {'kernel': 'patch_embed.proj.weight', 'bias': 'patch_embed.proj.bias'}[path[1]]
  return '.'.join(path[:-1] + ({'kernel': 'weight', 'scale': 'weight'}.get(path[-1], path[-1]),))


def _is_linear(name, shape):
  return name.endswith('.weight') and len(shape) == 2


def _to_flax(name, array):
  if name == 'patch_embed.proj.weight':
    return array.transpose(2, 3, 4, 1, 0)  # Conv3d (O, I, T, H, W) -> (T, H, W, I, O)
  return array.T if _is_linear(name, array.shape) else array  # Linear (out, in) -> (in, out)


def _original_shape(name, shape):
  if name == 'patch_embed.proj.weight':
    return tuple(shape[i] for i in (4, 3, 0, 1, 2))
  return tuple(shape[::-1]) if _is_linear(name, shape) else tuple(shape)


def _map_tensors(src, found, abstract):
  """Fill the abstract parameter tree with the file's tensors; refuse, naming the key, a missing or misshapen one."""
  t, out = found.tensors, []

  def take(name, shape):
    shown = found.names.get(name, name)
    if name not in t:
      raise CheckpointError(f"{os.fsdecode(src)}: missing encoder tensor '{shown}'")
    if t[name].shape != _original_shape(name, shape):
      raise CheckpointError(f"{os.fsdecode(src)}: '{shown}' has shape {tuple(t[name].shape)}, expected "
                            f'{_original_shape(name, shape)}')
    return _to_flax(name, t.pop(name))  # pop: the source copy is freed as soon as it is converted

  for path, like in traverse_util.flatten_dict(abstract).items():
    inner = path[1:] if path[0] == 'encoder' else path
    if inner[0] == 'blocks':
      depth = like.shape[0]
      value = np.stack([take(f'blocks.{i}.' + _original_name(inner[1:]), like.shape[1:]) for i in range(depth)])
    else:
      value = take(_original_name(inner), like.shape)
    out.append((path, np.ascontiguousarray(value, np.float32)))
  leftover = sorted(k for k in t if k.startswith(formats.ENCODER_PREFIXES))
  if leftover:
    first = found.names.get(leftover[0], leftover[0])
    raise CheckpointError(f"{os.fsdecode(src)}: unsupported encoder tensor '{first}'"
                          + (f' (and {len(leftover) - 1} more)' if len(leftover) > 1 else ''))
  return traverse_util.unflatten_dict(dict(out))


def _sha256(path):
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 22), b''):
      h.update(chunk)
  return h.hexdigest()


def convert_checkpoint(src, out_dir, *, num_heads=None, image_size=None, num_frames=None, region_size=None,
                       ln_eps=None):
  """Convert `src` (.pth/.pt/.bin torch zip, or .safetensors) into `out_dir`; returns what config.json holds.

  The keyword arguments are the tool's flags; a value the checkpoint's own args state wins, and a flag that
  disagrees with it is an error. Raises CheckpointError (a ValueError) with a one-line message.
  """
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise CheckpointError(f'{os.fsdecode(out_dir)}: output directory exists and is not empty')
  found = formats.read(src)
  overrides = dict(num_heads=num_heads, image_size=image_size, num_frames=num_frames, region_size=region_size,
                   ln_eps=ln_eps)
  cfg, origin = _encoder_config(src, found, overrides)
  classifier = 'head.weight' in found.tensors
  meta = {
      'format': found.format, 'description': found.description, 'source': os.path.basename(os.fsdecode(src)),
      'source_sha256': _sha256(src),
      'encoder': {'name': found.architecture, **dataclasses.asdict(cfg)},
      'fc_norm': classifier, 'fc_norm_eps': found.fc_norm_eps,
      'num_classes': int(found.tensors['head.weight'].shape[0]) if classifier else 0,
      'sizes_from': origin,
  }
  _, abstract = nnx.split(converted.abstract_encoder(meta))
  state = _map_tensors(src, found, nnx.to_pure_dict(abstract))
  meta['encoder_params'] = int(sum(v.size for v in traverse_util.flatten_dict(state['encoder']).values()))
  meta['dropped_keys'] = found.dropped
  meta['missing_keys'] = [] if classifier else ['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias']
  os.makedirs(out_dir, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(os.path.join(out_dir, 'state')), state)
  with open(os.path.join(out_dir, 'config.json'), 'w') as f:  # written last: its presence means complete
    json.dump(meta, f, indent=2)
  return meta


def summary(meta, out_dir):
  """A few lines for people: what was found and what was written."""
  e = meta['encoder']
  sizes = ', '.join(f'{k} {e[k]} ({v})' for k, v in meta['sizes_from'].items())
  lines = [
      f"found:    {meta['description']}",
      f"encoder:  {e['name']} width {e['width']}, depth {e['depth']}, {e['num_heads']} heads, MLP {e['mlp_dim']}, "
      f"{e['num_frames']} frames at {e['image_size']} px" + (f", region size {tuple(e['region_size'])}"
                                                               if e['name'] == 'lgi_former' else '')
      + f", LayerNorm eps {e['ln_eps']:g}; {meta['encoder_params']:,} parameters",
      f'sizes:    {sizes}',
      'classifier: ' + (f"fc_norm + head ({meta['num_classes']} classes) kept" if meta['fc_norm'] else 'none'),
  ]
  if meta['dropped_keys']:
    shown = ', '.join(meta['dropped_keys'][:4]) + (', ...' if len(meta['dropped_keys']) > 4 else '')
    lines.append(f"dropped:  {len(meta['dropped_keys'])} tensors ({shown})")
  lines += [f"sha256:   {meta['source_sha256']}", f'written:  {out_dir}']
  return '\n'.join(lines)
