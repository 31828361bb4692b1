"""MTCAE-DFER (the paper's Eqs. 4-9) and the other structure strategies of its Table I.

    F  = Encoder(video)
    Y1 = ViTDecoder(F, F);  Y2 = ViTDecoder(Y1, F);  Y3 = ViTDecoder(Y2, F)          (4)-(6), 'cascaded'
    B  = FC(Pool(Norm(Y1)));  P = FC(Pool(Norm(Y2)));  E = FC(Pool(Norm(Y3)))       (7)-(9)

| strategy        | decoders                                                       |
|-----------------|----------------------------------------------------------------|
| `stl`           | none: one head on F, expression only                           |
| `nonshared_mlp` | one MLPDecoder per task, each on F                             |
| `nonshared_vit` | one ViTDecoder per task, each queried with F                   |
| `shared_mlp`    | a shared MLPDecoder, then one MLPDecoder per task on its output |
| `shared_vit`    | a shared ViTDecoder, then one ViTDecoder per task queried with its output |
| `cascaded`      | one ViTDecoder per task, each queried with the previous one's output |

`feature_proj='shared'` is the authors' Keras code: F (after `feature_dropout`) goes through ONE bias-free Dense to
the decoder width, P = Dense(Dropout(F)); P replaces F above, as every decoder's keys/values (each decoder
normalises it with its own LayerNorm) and as the first query. 'per_decoder' (Algorithm 1) projects F in each
decoder.
"""

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from mtcae_jax.models import decoders, heads, layers

STRATEGIES = ('stl', 'nonshared_mlp', 'nonshared_vit', 'shared_mlp', 'shared_vit', 'cascaded')
FEATURE_PROJS = ('per_decoder', 'shared')
TASKS = ('boxes', 'landmarks', 'expression')  # the cascade's order
OUTPUT_KEYS = {'boxes': 'boxes', 'landmarks': 'landmarks', 'expression': 'logits'}


class MTCAE(nnx.Module):
  """video (B, T, H, W, 3) -> {'boxes' (B,T,4), 'landmarks' (B,T,K,2), 'logits' (B,C), 'tokens', 'stage_features'}.

  `stl` has only the expression task, so it returns no boxes or landmarks.
  """

  def __init__(self, encoder, *, strategy, decoder_cfg: decoders.DecoderConfig, head_cfg, num_classes,
               num_landmarks, encoder_norm=False, feature_proj='per_decoder', feature_dropout=0.0, impl='einsum',
               dtype=jnp.float32, scan=True, remat='none', rngs):
    if strategy not in STRATEGIES:
      raise ValueError(f'model.strategy must be one of {STRATEGIES}, got {strategy!r}')
    if feature_proj not in FEATURE_PROJS:
      raise ValueError(f'model.feature_proj must be one of {FEATURE_PROJS}, got {feature_proj!r}')
    self.strategy, self.encoder, self.feature_dropout = strategy, encoder, feature_dropout
    d, w = encoder.cfg.width, decoder_cfg.width
    frames = encoder.cfg.num_frames
    self.encoder_norm = layers.layer_norm(d, eps=decoder_cfg.ln_eps, dtype=dtype, rngs=rngs) if encoder_norm else None
    shared_proj = feature_proj == 'shared' and strategy != 'stl'
    self.feature_proj = (layers.dense(d, w, ('embed', 'mlp'), use_bias=False, dtype=dtype, rngs=rngs)
                         if shared_proj else None)
    if shared_proj:
      d = w  # the decoders see P, already at their width

    kw = dict(dtype=dtype, scan=scan, remat=remat, rngs=rngs)
    vit = lambda q: decoders.ViTDecoder(q, d, decoder_cfg, impl=impl, project_kv=not shared_proj, **kw)
    mlp = lambda q: decoders.MLPDecoder(q, decoder_cfg, **kw)
    shared = None
    if strategy == 'stl':
      tasks, task_decoders = ('expression',), None
    elif strategy == 'cascaded':
      tasks = TASKS
      task_decoders = {t: vit(d if i == 0 else w) for i, t in enumerate(tasks)}
    else:
      tasks, make = TASKS, (vit if strategy.endswith('vit') else mlp)
      if strategy.startswith('shared'):
        shared = make(d)
      task_decoders = {t: make(w if shared is not None else d) for t in tasks}
    self.shared_decoder = shared
    self.decoders = nnx.Dict(task_decoders) if task_decoders else None

    out_shapes = {'boxes': (frames, 4), 'landmarks': (frames, num_landmarks, 2), 'expression': (num_classes,)}
    head_dim = encoder.cfg.width if strategy == 'stl' else w
    self.heads = nnx.Dict({
        t: heads.TaskHead(
            head_dim, out_shapes[t],
            pool='mean' if t == 'expression' else head_cfg.pool,
            # STL is VideoMAE's classifier: pool, then fc_norm, then the FC layer.
            norm_first=head_cfg.norm_first and strategy != 'stl',
            dropout_rate=head_cfg.dropout, num_slices=encoder.cfg.grid[0], ln_eps=decoder_cfg.ln_eps,
            dtype=dtype, rngs=rngs)
        for t in tasks})
    self.tasks = tasks

  def start_regression_at(self, stats):
    """Starts the box and landmark heads at the mean targets `stats` (see data/target_stats.py)."""
    for t in ('boxes', 'landmarks'):
      if t in self.tasks:
        self.heads[t].start_at(stats[t])

  def __call__(self, video, *, key=None):
    keys = iter(jax.random.split(key, 9)) if key is not None else itertools.repeat(None)
    f = self.encoder(video, key=next(keys))
    if self.encoder_norm is not None:
      f = self.encoder_norm(f)
    tokens = f
    if self.strategy != 'stl':  # a key of its own, so the other dropout draws are as without it
      f = layers.dropout(f, self.feature_dropout, None if key is None else jax.random.fold_in(key, 9))
    if self.feature_proj is not None:
      f = self.feature_proj(f)
    features = {}
    if self.strategy == 'stl':
      features['expression'] = f
    elif self.strategy == 'cascaded':
      y = f
      for t in self.tasks:
        y = features[t] = self.decoders[t](y, f, key=next(keys))
    else:
      query = f
      if self.shared_decoder is not None:
        query = features['shared'] = self.shared_decoder(f, f, key=next(keys))
      for t in self.tasks:
        features[t] = self.decoders[t](query, f, key=next(keys))
    out = {'tokens': tokens, 'stage_features': features}
    for t in self.tasks:
      out[OUTPUT_KEYS[t]] = self.heads[t](features[t], key=next(keys))
    return out
