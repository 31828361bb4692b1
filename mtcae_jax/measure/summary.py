r"""Parameter counts, output shapes and analytic GFLOPs of a config's model, without allocating it (also installed
as `mtcae-summary`).

    python -m mtcae_jax.measure.summary --config=configs/mead.py
    python -m mtcae_jax.measure.summary --config=configs/mead.py:variant=B/16 --config.model.strategy=nonshared_vit
"""

import copy
import math
import sys

import jax
import jax.numpy as jnp
from absl import flags, logging
from flax import nnx

from mtcae_jax import cli, models
from mtcae_jax.measure import flops
from mtcae_jax.models import mtcae

def parameter_counts(model):
  """{part: number of parameters} for the encoder, each decoder and each head, plus 'total'."""
  counts = {}
  for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    depth = 2 if path[0] in ('decoders', 'heads') else 1
    part = '.'.join(str(p) for p in path[:depth])
    counts[part] = counts.get(part, 0) + math.prod(value.shape)
  order = ['encoder', 'encoder_norm', 'feature_proj', 'shared_decoder'] + [f'{kind}.{t}' for kind in ('decoders', 'heads')
                                                            for t in mtcae.TASKS]
  counts = dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
  counts['total'] = sum(counts.values())
  return counts


def trainable_count(model, config):
  """Parameters the optimizer updates: all but a frozen encoder's (train/step.py `trainable`)."""
  from mtcae_jax.train import step  # pylint: disable=g-import-not-at-top  # optax and the data pipeline
  return sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(model, step.trainable(config))))


def video_spec(config, batch):
  return jax.ShapeDtypeStruct((batch, config.num_frames, config.image_size, config.image_size, 3), jnp.float32)


def clip_flops(config):
  """Analytic matmul FLOPs per clip: {'forward', 'forward_backward', 'encoder_forward'}.

  Model FLOPs, as MFU counts them: attention traced as plain softmax attention whatever `attention_impl` runs, so
  work an implementation repeats (the blockwise backward pass recomputes QK^T) is not credited.
  """
  config = copy.deepcopy(config)
  config.model.attention_impl = 'einsum'
  model = models.abstract_model(config)
  graphdef, state = nnx.split(model)
  params, rest = nnx.split_state(state, nnx.Param, ...)
  video = video_spec(config, 1)

  def loss(params, video):
    out = nnx.merge(graphdef, params, rest)(video)
    return sum(jnp.sum(v) for k, v in out.items() if k in ('boxes', 'landmarks', 'logits'))

  enc_graphdef, enc_state = nnx.split(model.encoder)
  return {
      'forward': flops.count_flops(loss, params, video),
      'forward_backward': flops.count_flops(jax.grad(loss), params, video),
      'encoder_forward': flops.count_flops(lambda s, v: nnx.merge(enc_graphdef, s)(v), enc_state, video),
  }


def summarize(config, batch=1):
  """The summary as text."""
  model = models.abstract_model(config)
  graphdef, state = nnx.split(model)
  outputs = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s)(v), state, video_spec(config, batch))
  enc = config.model.encoder
  lines = [f'MTCAE-DFER  strategy={config.model.strategy}  encoder={enc.name} {enc.variant}  '
           f'input ({config.num_frames}, {config.image_size}, {config.image_size}, 3)  '
           f'classes={config.num_classes}  dtype={config.model.dtype}', '', f'{"part":<28}{"parameters":>16}']
  lines += [f'{part:<28}{n:>16,}' for part, n in parameter_counts(model).items()]
  trainable = trainable_count(model, config)
  lines.append(f'{"trainable":<28}{trainable:>16,}')
  lines.append(f'{"frozen":<28}{parameter_counts(model)["total"] - trainable:>16,}')
  lines += ['', f'{"output":<28}{"shape":>16}']
  for path, leaf in jax.tree_util.tree_flatten_with_path(outputs)[0]:
    name = '.'.join(str(getattr(k, 'key', k)) for k in path)
    lines.append(f'{name:<28}{str(leaf.shape):>16}')
  f = clip_flops(config)
  lines += ['', 'GFLOPs per clip (matrix multiplications, counted from the traced program):',
            f'  forward            {f["forward"] / 1e9:10.1f}   (encoder {f["encoder_forward"] / 1e9:.1f})',
            f'  forward+backward   {f["forward_backward"] / 1e9:10.1f}']
  return '\n'.join(lines)


def define_flags(fv):
  flags.mark_flag_as_required('config', flag_values=fv)
  flags.DEFINE_integer('batch', 1, 'Batch size of the printed output shapes.', lower_bound=1, flag_values=fv)


def command(fv, args):
  del args
  logging.set_verbosity(logging.WARNING)
  try:
    print(summarize(fv.config, fv.batch))
  except ValueError as e:  # a config the model rejects, e.g. an unknown variant
    raise cli.Error(e) from None


def main(argv=None):
  return cli.run(__doc__, define_flags, command, argv, config='Config file, e.g. configs/mead.py[:variant=B/16].')


if __name__ == '__main__':
  sys.exit(main())
