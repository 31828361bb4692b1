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
import secrets
import shutil

import numpy as np
import orbax.checkpoint as ocp
from flax import nnx, traverse_util

from mtcae_jax.models import lgi_former, vit
from mtcae_jax.pretrained import converted, formats
from mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint

# The heads of the released widths (VideoMAE S/B/L/H, MAE-DFER's LGI/512), from the encoders' variant tables.
KNOWN_HEADS = {width: heads for table in (vit.VARIANTS, lgi_former.VARIANTS)
               for name, (width, _, heads, _) in table.items() if name != 'tiny'}
FLAGS = {'num_heads': '--num_heads', 'image_size': '--image_size', 'num_frames': '--num_frames',
         'region_size': '--region_size'}
HF_CONFIG = 'Hugging Face config.json'
# transformers' names of exact (erf) GELU, the only activation the encoders compute; the tanh and sigmoid
# approximations (gelu_new, gelu_pytorch_tanh, quick_gelu, ...) differ by up to a few percent and are refused.
HF_GELU = ('gelu', 'gelu_python')


def _short(value):
  """A value read from a file, for a one-line message: repr, cut short."""
  text = repr(value)
  return text if len(text) <= 40 else text[:37] + '...'


# ---------------------------------------------------------------------------------------------------------------
# What the file's own args or config.json say, checked before it is believed.

# MAE-DFER / VideoMAE args that `formats` reads as integers (None allowed where it is skipped), and as strings.
_ARGS_INT = {'input_size': False, 'num_frames': False, 'tubelet_size': False, 'num_segments': True,
             'num_heads': True}
_ARGS_STR = ('attn_type', 'lg_classify_token_type')


def _check_args(src, args):
  """Refuse, naming it, an args field of the wrong type (formats would stop on it with a TypeError)."""
  for name, none_ok in _ARGS_INT.items():
    if name in args and not (converted.is_int(args[name]) or (none_ok and args[name] is None)):
      raise CheckpointError(f"{os.fsdecode(src)}: the checkpoint's args say {name}={_short(args[name])}, "
                            'expected an integer')
  for name in _ARGS_STR:
    if args.get(name) is not None and not isinstance(args[name], str):
      raise CheckpointError(f"{os.fsdecode(src)}: the checkpoint's args say {name}={_short(args[name])}, "
                            'expected a string')
  region = args.get('lg_region_size')
  if region is not None and not (isinstance(region, (list, tuple)) and len(region) == 3
                                 and all(converted.is_int(r) and r > 0 for r in region)):
    raise CheckpointError(f"{os.fsdecode(src)}: the checkpoint's args say lg_region_size={_short(region)}, "
                          'expected three positive integers')


def _read_hf_config(src):
  """The Hugging Face config.json beside `src` -> (dict or None, the one-line problem with it or None).

  Only a VideoMAE config counts (as in `formats`); it is checked before `formats` reads sizes from it.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(src)), 'config.json')
  try:
    with open(path) as f:
      conf = json.load(f)
  except (OSError, ValueError, RecursionError):
    return None, None  # absent or not JSON: `formats` ignores it too
  where = f'{path}:'
  if not isinstance(conf, dict):
    return None, f'{where} a JSON {type(conf).__name__}, not an object'
  if conf.get('model_type') != 'videomae':
    return None, None
  for key in ('num_attention_heads', 'num_frames', 'tubelet_size', 'patch_size', 'hidden_size'):
    if conf.get(key) is not None and not converted.is_int(conf[key]):
      return conf, f'{where} {key}={_short(conf[key])} is not an integer'
  size = conf.get('image_size')
  if isinstance(size, (list, tuple)) and len(size) == 2 and all(converted.is_int(s) for s in size):
    if size[0] != size[1]:
      return conf, f'{where} image_size={list(size)} is not square; only square frames are implemented'
  elif size is not None and not converted.is_int(size):
    return conf, f'{where} image_size={_short(size)} is not an integer'
  eps = conf.get('layer_norm_eps', 1e-12)
  if not converted.eps_ok(eps):
    return conf, f'{where} layer_norm_eps={_short(eps)} is not a number between 0 and 1'
  act = conf.get('hidden_act', 'gelu')
  if not isinstance(act, str) or act not in HF_GELU:
    return conf, (f'{where} hidden_act={_short(act)} is not implemented: the encoder computes exact GELU '
                  f"({' or '.join(map(repr, HF_GELU))}) only")
  if not isinstance(conf.get('use_mean_pooling', True), bool):
    return conf, f"{where} use_mean_pooling={_short(conf['use_mean_pooling'])} is not true or false"
  return conf, None


def _class_names(conf, num_classes):
  """id2label of a Hugging Face config as a list in class order, when it names exactly the classes."""
  labels = conf.get('id2label') if conf else None
  if not isinstance(labels, dict) or not num_classes:
    return None
  names = [labels.get(str(i)) for i in range(num_classes)]
  if len(labels) != num_classes or not all(isinstance(n, str) for n in names):
    return None
  return names


def _read(src, conf_problem):
  """formats.read, with a malformed args field or config.json refused in one line instead of a traceback."""
  try:
    return formats.read(src)
  except CheckpointError:
    raise
  except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
    cause = e
  # formats stopped on a value of the wrong type: name it. Only on this error path is the file read a second time.
  try:
    args = formats._unwrap(src, load_checkpoint(src))[1]  # pylint: disable=protected-access
  except CheckpointError:
    args = None
  if args:
    _check_args(src, args)
  if conf_problem:
    raise CheckpointError(conf_problem)
  raise CheckpointError(f'{os.fsdecode(src)}: cannot read the sizes the checkpoint states: '
                        f"{type(cause).__name__}: {' '.join(str(cause).split())[:200]}")


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
  if patch.ndim != 5 or patch.shape[1] != 3 or patch.shape[3] != patch.shape[4] or 0 in patch.shape:
    raise err(f"'{found.names.get('patch_embed.proj.weight', 'patch_embed.proj.weight')}' has shape "
              f'{patch.shape}, expected (width, 3, tubelet, patch, patch)')
  width, tubelet, patch_size = (int(s) for s in patch.shape[:1] + patch.shape[2:4])
  blocks = {int(m.group(1)) for k in t if (m := re.match(r'blocks\.(\d+)\.', k))}
  if not blocks:
    raise err('missing encoder tensors: no transformer blocks')
  if len(blocks) != max(blocks) + 1:
    gap = next(i for i in range(max(blocks) + 1) if i not in blocks)  # lazily: the largest index may be huge
    raise err(f'missing encoder tensors: no block {gap} of {max(blocks) + 1}')
  fc1 = need('blocks.0.mlp.fc1.weight')
  if fc1.ndim != 2 or 0 in fc1.shape:
    raise err(f"'{found.names.get('blocks.0.mlp.fc1.weight', 'blocks.0.mlp.fc1.weight')}' has shape "
              f'{fc1.shape}, expected (mlp_dim, width)')
  mlp_dim = int(fc1.shape[0])
  if 'head.weight' in t and (t['head.weight'].ndim != 2 or 0 in t['head.weight'].shape):
    raise err(f"'{found.names.get('head.weight', 'head.weight')}' has shape {t['head.weight'].shape}, "
              'expected (classes, width)')
  attn = 'attn' if found.architecture == 'vit' else 'first_attn'

  sizes, origin = {}, {}
  for field, flag in FLAGS.items():
    stated, given = found.hints.get(field), overrides.get(field)
    if given is not None and field == 'region_size':
      given = tuple(int(s) for s in given)
    if field == 'image_size' and isinstance(stated, (list, tuple)) and len(set(stated)) == 1:
      stated = stated[0]  # a square [size, size] (Hugging Face allows a pair; config.json was checked)
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

  fields = dict(width=width, depth=max(blocks) + 1, num_heads=sizes['num_heads'], mlp_dim=mlp_dim,
                patch_size=patch_size, tubelet_size=tubelet, num_frames=sizes['num_frames'],
                image_size=sizes['image_size'], qkv_bias=f'blocks.0.{attn}.q_bias' in t,
                ln_eps=overrides.get('ln_eps') or found.ln_eps)
  bad = converted.size_problem(fields)
  if bad:
    field, why = bad
    said = origin.get(field) or ('the weights' if field not in ('num_heads', 'image_size', 'num_frames') else '')
    raise err(f'{field}={_short(fields[field])}' + (f' (from {said})' if said else '') + f' {why}')
  if not converted.eps_ok(fields['ln_eps']):
    raise err(f"LayerNorm eps {_short(fields['ln_eps'])} is not a number between 0 and 1")
  fields['ln_eps'] = float(fields['ln_eps'])
  if sizes['region_size'] is not None and not (len(sizes['region_size']) == 3
                                               and all(converted.is_int(r) and r > 0 for r in sizes['region_size'])):
    raise err(f"region_size={_short(sizes['region_size'])} is not three positive integers")
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


def _check_out(out_dir):
  """Refuse, before anything is read, an output path that cannot become a new directory. -> its absolute path."""
  if out_dir is None or not os.fsdecode(out_dir).strip():
    raise CheckpointError('the output path is empty')
  shown, out = os.fsdecode(out_dir), os.path.abspath(out_dir)
  if os.path.islink(out) and not os.path.exists(out):
    raise CheckpointError(f'{shown}: output path is a dangling symbolic link')
  if os.path.exists(out):
    if not os.path.isdir(out):
      raise CheckpointError(f'{shown}: output path exists and is not a directory')
    if os.listdir(out):
      raise CheckpointError(f'{shown}: output directory exists and is not empty')
    out = os.path.realpath(out)  # an empty directory, maybe through a link: replaced by the finished one
  parent = os.path.dirname(out)
  while not os.path.exists(parent):  # the nearest existing ancestor must be a writable directory
    if os.path.islink(parent):
      raise CheckpointError(f'{shown}: {parent} is a dangling symbolic link')
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise CheckpointError(f'{shown}: {parent} is not a directory')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise CheckpointError(f'{shown}: cannot write in {parent}')
  return out


def _write(out, shown, state, meta):
  """Write into a temporary sibling of `out`, renamed to `out` when complete: a failure leaves nothing behind."""
  parent = os.path.dirname(out)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f'.{os.path.basename(out)}.{secrets.token_hex(4)}.partial')
    os.mkdir(tmp)  # (not mkdtemp: that makes it private, and the result is an ordinary directory)
  except OSError as e:
    raise CheckpointError(f'{shown}: cannot create the output directory: {e.strerror or e}') from None
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(os.path.join(tmp, 'state'), state)
    with open(os.path.join(tmp, 'config.json'), 'w') as f:
      json.dump(meta, f, indent=2)
    os.rename(tmp, out)  # replaces `out` only if it is (still) an empty directory
  except BaseException as e:
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(e, OSError):
      raise CheckpointError(f'{shown}: writing failed, nothing was written: {e.strerror or e}') from None
    raise


def convert_checkpoint(src, out_dir, *, num_heads=None, image_size=None, num_frames=None, region_size=None,
                       ln_eps=None):
  """Convert `src` (.pth/.pt/.bin torch zip, or .safetensors) into `out_dir`; returns what config.json holds.

  The keyword arguments are the tool's flags; a value the checkpoint's own args state wins, and a flag that
  disagrees with it is an error. Raises CheckpointError (a ValueError) with a one-line message. The output path
  is checked before the file is read, and written whole or not at all.
  """
  out = _check_out(out_dir)
  overrides = dict(num_heads=num_heads, image_size=image_size, num_frames=num_frames, region_size=region_size,
                   ln_eps=ln_eps)
  conf, conf_problem = _read_hf_config(src)
  found = _read(src, conf_problem)
  hf = found.format == 'hf_videomae'
  if hf and conf_problem:
    raise CheckpointError(conf_problem)
  conf = conf if hf else None
  cfg, origin = _encoder_config(src, found, overrides)
  classifier = 'head.weight' in found.tensors
  num_classes = int(found.tensors['head.weight'].shape[0]) if classifier else 0
  meta = {
      'format': found.format, 'description': found.description, 'source': os.path.basename(os.fsdecode(src)),
      'source_sha256': _sha256(src),
      'encoder': {'name': found.architecture, **dataclasses.asdict(cfg)},
      'fc_norm': classifier, 'fc_norm_eps': found.fc_norm_eps,
      'num_classes': num_classes,
      'class_names': _class_names(conf, num_classes),
      'sizes_from': origin,
      'not_converted': _not_converted(found, conf),
  }
  _, abstract = nnx.split(converted.abstract_encoder(meta))
  state = _map_tensors(src, found, nnx.to_pure_dict(abstract))
  meta['encoder_params'] = int(sum(v.size for v in traverse_util.flatten_dict(state['encoder']).values()))
  meta['dropped_keys'] = found.dropped
  meta['missing_keys'] = [] if classifier else ['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias']
  _write(out, os.fsdecode(out_dir), state, meta)
  return meta


def _not_converted(found, conf):
  """Why a classifier in the file was not converted (one line), or None."""
  heads = [k for k in found.dropped if re.search(r'(^|\.)(head|classifier)\.weight$', k)]
  if not heads:
    return None
  if conf is not None and conf.get('use_mean_pooling') is False:
    return (f"the classifier ('{heads[0]}') and the final norm were not converted: this Hugging Face model has "
            'use_mean_pooling=false, so it classifies the first token after a final LayerNorm, which the '
            'converted encoder does not implement (its tokens are taken before that norm)')
  return (f"the classifier ('{heads[0]}') was not converted: it has no fc_norm beside it, and the converted "
          'classifier is fc_norm + head on the mean token')


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
      'classifier: ' + (f"fc_norm + head ({meta['num_classes']} classes) kept" if meta['fc_norm'] else
                        f"none: {meta['not_converted']}" if meta.get('not_converted')
                        else 'none'),
  ]
  if meta.get('class_names'):
    names = meta['class_names']
    lines.append(f"classes:  {', '.join(names[:8])}" + (f', ... ({len(names)})' if len(names) > 8 else ''))
  if meta['dropped_keys']:
    shown = ', '.join(meta['dropped_keys'][:4]) + (', ...' if len(meta['dropped_keys']) > 4 else '')
    lines.append(f"dropped:  {len(meta['dropped_keys'])} tensors ({shown})")
  lines += [f"sha256:   {meta['source_sha256']}", f'written:  {out_dir}']
  return '\n'.join(lines)
