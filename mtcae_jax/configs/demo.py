"""The embedded default: a small MTCAE-DFER trained on the bundled demo clips, then tested on a held-out fold.

    python -m mtcae_jax.main --config=configs/demo.py --workdir=runs/demo

The demo data (18 clips of 6 people, in the RAVDESS layout, inside the package) is built into WORKDIR/data on
first use. Same model and code path as the paper's configs, scaled down to run on a laptop CPU in minutes:
8 frames of 64 px, the 2-layer `tiny` encoder (width 32) and the cascaded decoders at depth 2, width 32.

Its boxes and landmarks against the constant predictor (the training clips' mean box and landmarks), on the
training clips and the held-out person: docs/HEADS.md#measured; how long it takes:
docs/BENCHMARKS.md#data-and-the-demo-cpu. Eighteen clips are far too few to learn expressions across people, so
expect an expression UAR near chance.
"""

from mtcae_jax.configs import ravdess


def get_config(arg=None):
  c = ravdess.get_config(arg or 'variant=tiny')
  c.prepare_demo_data = True
  c.num_frames, c.image_size = 8, 64
  c.model.decoder.update(depth=2, width=32, num_heads=2, head_dim=16, mlp_dim=64, dropout=0.1)
  c.batch_size = c.eval_batch_size = 4
  c.num_steps = 600  # 200 epochs of the 12 training clips
  c.eval_every_steps = 100
  c.log_every_steps = 20
  c.eval_views = 1
  c.augment.policy = 'crop_flip_colour'  # ours: 18 clips need it more than the paper's thousands
  # A tiny encoder trained from scratch, not a frozen pre-trained one as the paper presets have.
  c.model.encoder.frozen = False
  c.optimizer.update(learning_rate=1e-3, warmup_steps=5, schedule='warmup_cosine')
  return c
