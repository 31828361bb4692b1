"""Recognise a video-encoder checkpoint and bring it to one key layout: the original VideoMAE / MAE-DFER names.

Layouts recognised, from keys and shapes only:

| format              | what it is                                                                            |
|---------------------|---------------------------------------------------------------------------------------|
| `mae_dfer_finetune` | MAE-DFER fine-tune save `{'model', 'epoch', 'args': Namespace}`: LGI-Former or plain ViT |
| `mae_dfer_pretrain` | MAE-DFER pre-training save: the encoder under `encoder.` next to a decoder               |
| `videomae_finetune` | original VideoMAE fine-tuned weights under `module` or `model` (or a bare state dict)    |
| `videomae_pretrain` | original VideoMAE pre-training: encoder under `encoder.`                                |
| `hf_videomae`       | Hugging Face `VideoMAEModel` / `ForVideoClassification` / `ForPreTraining`; with or     |
|                     | without `videomae.`; transformers-4 `q_bias`/`v_bias` or -5 `query.bias`/`value.bias`   |

`read` returns the tensors under the original names (`patch_embed.proj.weight`, `blocks.N.attn.qkv.weight`, ...,
`fc_norm`, `head`), float32, and what the file says about the sizes that shapes cannot tell (heads, input size).
"""

import argparse
import dataclasses
import json
import os
import re

import numpy as np

from mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint

FORMATS = {
    'mae_dfer_finetune': 'MAE-DFER fine-tuned checkpoint',
    'mae_dfer_pretrain': 'MAE-DFER pre-training checkpoint (decoder dropped)',
    'videomae_finetune': 'original VideoMAE fine-tuned checkpoint',
    'videomae_pretrain': 'original VideoMAE pre-training checkpoint (decoder dropped)',
    'hf_videomae': 'Hugging Face VideoMAE checkpoint',
}
ARCHITECTURES = {'vit': 'VideoMAE ViT', 'lgi_former': 'LGI-Former'}
ENCODER_PREFIXES = ('patch_embed.', 'blocks.', 'lg_region_tokens')
# Encoder tensors that are not converted because the token sequence is taken before any norm.
FINAL_NORM = ('norm.weight', 'norm.bias')


@dataclasses.dataclass
class Found:
  format: str  # a key of FORMATS
  description: str  # one line: what was found
  architecture: str  # a key of ARCHITECTURES
  tensors: dict  # original VideoMAE / MAE-DFER name -> float32 array
  names: dict  # original name -> the key in the file, for messages (when they differ)
  dropped: list  # keys of the file that are not converted
  hints: dict  # sizes the file states: num_heads, image_size, num_frames, region_size, pool, tubelet_size
  ln_eps: float  # LayerNorm eps of the blocks
  fc_norm_eps: float
  source_of_hints: str = ''  # where the hints came from ('args', "Hugging Face config.json"), for the summary


def _err(path, msg):
  return CheckpointError(f'{os.fsdecode(path)}: {msg}')


def _is_state_dict(obj):
  return isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, np.ndarray)
                                               for k, v in obj.items())


def _unwrap(path, obj):
  """-> (state dict, args or None, container key or None)."""
  if _is_state_dict(obj):
    return obj, None, None
  if not isinstance(obj, dict):
    raise _err(path, f'not a model checkpoint: the file holds a {type(obj).__name__}, not a dict of tensors')
  for key in ('model', 'module', 'state_dict'):
    if _is_state_dict(obj.get(key)):
      args = obj.get('args')
      if isinstance(args, argparse.Namespace):
        args = vars(args)
      return obj[key], (args if isinstance(args, dict) else None), key
  raise _err(path, 'not a model checkpoint: no state dict at the top level or under '
                   f"'model', 'module' or 'state_dict' (top-level keys: {sorted(map(str, obj))[:8]})")


def _strip(sd, prefix):
  return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _architecture(path, keys):
  if 'lg_region_tokens' in keys or any('.first_attn.' in k for k in keys):
    return 'lgi_former'
  if any(k.endswith('.attn.qkv.weight') for k in keys):
    return 'vit'
  sample = ', '.join(repr(k) for k in sorted(keys)[:4])
  raise _err(path, f'unknown architecture: no VideoMAE ViT or LGI-Former encoder tensors (keys like {sample})')


# Hugging Face VideoMAE layer names -> original names, per encoder layer.
_HF_LAYER = {
    'attention.output.dense': 'attn.proj', 'intermediate.dense': 'mlp.fc1', 'output.dense': 'mlp.fc2',
    'layernorm_before': 'norm1', 'layernorm_after': 'norm2',
}
_HF_BIAS = {'q_bias': 'q_bias', 'v_bias': 'v_bias', 'query.bias': 'q_bias', 'value.bias': 'v_bias'}


def _from_hugging_face(path, sd):
  """HF VideoMAE names -> original names; query/key/value are fused into `qkv`. -> (tensors, names, dropped, what)."""
  prefix = 'videomae.' if any(k.startswith('videomae.') for k in sd) else ''
  out, names, dropped, era = {}, {}, [], set()
  qkv = {}
  for key, value in sd.items():
    k = key[len(prefix):] if key.startswith(prefix) else key
    m = re.fullmatch(r'encoder\.layer\.(\d+)\.(.+)', k)
    new = None
    if k.startswith('embeddings.patch_embeddings.projection.'):
      new = 'patch_embed.proj.' + k.rsplit('.', 1)[1]
    elif k.startswith('fc_norm.'):
      new = k
    elif k.startswith('classifier.'):
      new = 'head.' + k.rsplit('.', 1)[1]
    elif k.startswith('layernorm.'):
      new = 'norm.' + k.rsplit('.', 1)[1]
    elif m:
      i, rest = m.groups()
      if rest.startswith('attention.attention.'):
        part = rest[len('attention.attention.'):]
        if part in ('query.weight', 'key.weight', 'value.weight'):
          qkv.setdefault(int(i), {})[part.split('.')[0]] = key
          continue
        if part == 'key.bias':
          if np.any(value):
            raise _err(path, f"'{key}': a nonzero key bias is not supported (VideoMAE's key bias is zero)")
          dropped.append(key)
          continue
        if part in _HF_BIAS:
          era.add('transformers 4 (q_bias/v_bias)' if '_' in part else 'transformers 5 (query.bias/value.bias)')
          new = f'blocks.{i}.attn.{_HF_BIAS[part]}'
      else:
        for hf, orig in _HF_LAYER.items():
          if rest.startswith(hf + '.'):
            new = f'blocks.{i}.{orig}.' + rest[len(hf) + 1:]
            break
      if new is None:
        raise _err(path, f"unsupported encoder tensor '{key}'")
    if new is None:
      dropped.append(key)  # decoder, encoder_to_decoder, mask_token of VideoMAEForPreTraining
      continue
    out[new], names[new] = value, key
  for i, parts in sorted(qkv.items()):
    for part in ('query', 'key', 'value'):
      if part not in parts:
        raise _err(path, f"missing encoder tensor '{prefix}encoder.layer.{i}.attention.attention.{part}.weight'")
    shape = sd[parts['query']].shape
    for part in ('query', 'key', 'value'):
      if sd[parts[part]].ndim != 2 or sd[parts[part]].shape != shape or shape[0] != shape[1]:
        raise _err(path, f"'{parts[part]}' has shape {sd[parts[part]].shape}, expected (width, width)"
                         + (f" as '{parts['query']}'" if part != 'query' and shape[:1] * 2 == shape else ''))
    new = f'blocks.{i}.attn.qkv.weight'
    out[new] = np.concatenate([sd[parts['query']], sd[parts['key']], sd[parts['value']]], axis=0)
    names[new] = parts['query'].replace('.query.', '.{query,key,value}.')
  model = ('VideoMAEForPreTraining' if any(k.startswith('decoder.') for k in sd) else
           'VideoMAEForVideoClassification' if 'head.weight' in out else 'VideoMAEModel')
  what = f"{model} weights, {'with' if prefix else 'without'} the 'videomae.' prefix"
  if era:
    what += ', ' + ' and '.join(sorted(era)) + ' names'
  return out, names, dropped, what


def _hf_config(path):
  """Sizes from a Hugging Face `config.json` saved beside the weights (`save_pretrained` writes one)."""
  try:
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), 'config.json')) as f:
      conf = json.load(f)
  except (OSError, ValueError):
    return {}, 1e-12
  if conf.get('model_type') != 'videomae':
    return {}, 1e-12
  hints = dict(num_heads=conf.get('num_attention_heads'), image_size=conf.get('image_size'),
               num_frames=conf.get('num_frames'), tubelet_size=conf.get('tubelet_size'))
  return {k: v for k, v in hints.items() if v is not None}, float(conf.get('layer_norm_eps', 1e-12))


def _args_hints(path, args, architecture):
  """Sizes from MAE-DFER / VideoMAE `args` (argparse.Namespace saved in the checkpoint)."""
  hints = {}
  if 'input_size' in args:
    hints['image_size'] = int(args['input_size'])
  if 'num_frames' in args:
    hints['num_frames'] = int(args['num_frames']) * int(args.get('num_segments', 1) or 1)
  if 'tubelet_size' in args:
    hints['tubelet_size'] = int(args['tubelet_size'])
  if args.get('num_heads'):
    hints['num_heads'] = int(args['num_heads'])
  attn_type = args.get('attn_type')
  if attn_type is not None and {'joint': 'vit', 'local_global': 'lgi_former'}.get(attn_type) != architecture:
    raise _err(path, f"args say attn_type={attn_type!r} but the tensors are a {ARCHITECTURES[architecture]}")
  if architecture == 'lgi_former':
    if args.get('lg_region_size') is not None:
      hints['region_size'] = tuple(int(s) for s in args['lg_region_size'])
    if args.get('lg_classify_token_type') is not None:
      hints['pool'] = args['lg_classify_token_type']
    # Only MAE-DFER's released LGI-Former (and its defaults) is ported; refuse the ablation variants.
    released = dict(lg_first_attn_type='self', lg_third_attn_type='cross', lg_attn_param_sharing_first_third=False,
                    lg_attn_param_sharing_all=False, lg_no_second=False, lg_no_third=False)
    for name, want in released.items():
      if name in args and args[name] != want:
        raise _err(path, f'unsupported LGI-Former variant: args say {name}={args[name]!r} '
                         f'(only {name}={want!r}, as released, is ported)')
  return hints


def _check_lgi_variant(path, keys):
  if any('.first_attn_norm1.' in k for k in keys):
    raise _err(path, "unsupported LGI-Former variant: 'first_attn_norm1' means cross-attention in the first step")
  if not any('.second_attn.' in k for k in keys) or not any('.third_attn_norm1.' in k for k in keys):
    raise _err(path, 'unsupported LGI-Former variant: blocks without the inter-region attention '
                     "('second_attn') or the local-global cross-attention ('third_attn_norm1')")


def read(path):
  """Load `path` (torch zip or safetensors) and recognise it. -> Found. Raises CheckpointError."""
  sd, args, container = _unwrap(path, load_checkpoint(path))
  if all(k.startswith('module.') for k in sd):  # saved from a DistributedDataParallel wrapper
    sd = _strip(sd, 'module.')
  keys = set(sd)
  if any(re.search(r'(^|\.)encoder\.layer\.\d+\.', k) for k in keys):
    tensors, names, dropped, what = _from_hugging_face(path, sd)
    fmt, architecture = 'hf_videomae', _architecture(path, tensors)
    hints, ln_eps = _hf_config(path)
    source, fc_norm_eps = ("Hugging Face config.json" if hints else ''), 1e-5  # HF's fc_norm keeps torch's eps
  else:
    pretrain = any(k.startswith(('encoder.blocks.', 'encoder.patch_embed.')) for k in keys)
    tensors = _strip(sd, 'encoder.') if pretrain else dict(sd)
    dropped = sorted(k for k in keys if not k.startswith('encoder.')) if pretrain else []
    names = {k: 'encoder.' + k for k in tensors} if pretrain else {}
    architecture = _architecture(path, tensors)
    mae_dfer = architecture == 'lgi_former' or (args is not None and 'attn_type' in args)
    fmt = f"{'mae_dfer' if mae_dfer else 'videomae'}_{'pretrain' if pretrain else 'finetune'}"
    what = (f"{'pre-training' if pretrain else 'fine-tuned'} weights under {container!r}" if container
            else 'a bare state dict')
    hints = _args_hints(path, args, architecture) if args else {}
    source, ln_eps, fc_norm_eps = ('args' if args else ''), 1e-6, 1e-6  # VideoMAE / MAE-DFER: LayerNorm(eps=1e-6)
  if architecture == 'lgi_former':
    _check_lgi_variant(path, tensors)
  for key in FINAL_NORM:  # a pre-training (or use_cls) final norm: tokens are taken before it
    if key in tensors:
      del tensors[key]
      dropped.append(names.get(key, key))
  if ('fc_norm.weight' in tensors) != ('head.weight' in tensors):  # a classifier needs both; keep neither
    for key in [k for k in tensors if k.startswith(('fc_norm.', 'head.'))]:
      del tensors[key]
      dropped.append(names.get(key, key))
  for key in [k for k in tensors if not k.startswith(ENCODER_PREFIXES + ('fc_norm.', 'head.'))]:
    del tensors[key]
    dropped.append(names.get(key, key))
  for key, value in tensors.items():  # float16 / bfloat16 -> float32
    if value.dtype.kind != 'f' and value.dtype.name not in ('bfloat16', 'float8_e4m3fn', 'float8_e5m2'):
      raise _err(path, f"'{names.get(key, key)}' has dtype {value.dtype}, expected floating point")
    tensors[key] = np.asarray(value, np.float32)
  description = f'{FORMATS[fmt]}, {ARCHITECTURES[architecture]} ({what})'
  return Found(fmt, description, architecture, tensors, names, sorted(dropped), hints, ln_eps, fc_norm_eps, source)
