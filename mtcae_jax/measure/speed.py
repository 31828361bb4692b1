"""Speed of a config's model: the real train step and inference, against the device's peak and against PyTorch.

`run(config, batch_size, steps, compare_torch)` returns everything as one dict; `tools/benchmark.py` is the command
line. All timings are medians over `steps` repeated calls, after one untimed call (compilation, warm-up).
"""

import copy
import gc
import os
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mtcae_jax import models, sharding
from mtcae_jax.data import device_input, pipeline
from mtcae_jax.measure import profiling, summary
from mtcae_jax.train import step as train_step

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets. Under JAX's default matmul precision a float32
# matmul runs as TF32 on these cards, so float32 is rated at the TF32 peak. Longer names are matched first.
GPU_PEAK_TFLOPS = {
    'H100 PCIe': {'bfloat16': 756.5, 'float32': 378.0},
    'H100 NVL': {'bfloat16': 835.5, 'float32': 417.5},
    'H200 NVL': {'bfloat16': 835.5, 'float32': 417.5},
    'H100': {'bfloat16': 989.4, 'float32': 494.7},  # SXM
    'H200': {'bfloat16': 989.4, 'float32': 494.7},
    'A100': {'bfloat16': 312.0, 'float32': 156.0},
}


def load_average():
  """The 1-minute load average: this machine's cores are shared, so each figure is recorded with it."""
  return round(os.getloadavg()[0], 2) if hasattr(os, 'getloadavg') else None


def host_peak_rss():
  """Peak resident memory of this process so far, in bytes (Linux reports KiB, macOS bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if platform.system() == 'Darwin' else peak * 1024


def device_memory():
  """The first device's allocator statistics (GPU, TPU), or None where the backend keeps none (CPU)."""
  stats = jax.local_devices()[0].memory_stats()
  if not stats:
    return None
  keys = ('peak_bytes_in_use', 'bytes_in_use', 'bytes_limit')
  return {k: int(stats[k]) for k in keys if k in stats}


def timed(fn, steps):
  """Seconds of each of `steps` calls of `fn` (which must block until its result is ready)."""
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def summarize_times(times, batch_size):
  median = statistics.median(times)
  return {'step_s': median, 'step_s_all': [round(t, 5) for t in times], 'clips_per_s': batch_size / median,
          'load_avg': load_average()}


def synthetic_batch(config, batch_size, seed=0):
  """A batch of random videos and labels with the shapes and dtypes of `pipeline.train_batches`."""
  rng = np.random.default_rng(seed)
  t, s = config.num_frames, config.image_size
  boxes = np.sort(rng.uniform(0, 1, (batch_size, t, 2, 2)), axis=2).transpose(0, 1, 3, 2).reshape(batch_size, t, 4)
  return {
      'video': rng.integers(0, 256, (batch_size, t, s, s, 3), np.uint8),
      'colour': rng.uniform(0.8, 1.2, (batch_size, 3)).astype(np.float32),
      'boxes': boxes.astype(np.float32),
      'landmarks': rng.uniform(0, 1, (batch_size, t, config.model.num_landmarks, 2)).astype(np.float32),
      'face_mask': np.ones((batch_size, t), bool),
      'label': rng.integers(0, config.num_classes, batch_size).astype(np.int32),
      'mask': np.ones(batch_size, bool),
  }


def matmul_tflops(dtype, size, reps):
  """Measured TFLOP/s of a jitted (size x size) @ (size x size) product: the peak to compare against on CPUs."""
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (size, size), dtype)
  b = jax.random.normal(kb, (size, size), dtype)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  times = timed(lambda: matmul(a, b).block_until_ready(), reps)
  return {'tflops': 2 * size ** 3 / statistics.median(times) / 1e12, 'size': size, 'dtype': jnp.dtype(dtype).name,
          'times_s': [round(t, 5) for t in times], 'load_avg': load_average()}


def gpu_peak(device_kind, dtype):
  """(data-sheet dense peak TFLOP/s, card) for a GPU named `device_kind`, or None for a card not in the table."""
  for name, peaks in GPU_PEAK_TFLOPS.items():
    if name.lower() in device_kind.lower():
      return peaks[jnp.dtype(dtype).name], name
  return None


def device_peak(dtype, matmul):
  """(peak TFLOP/s, where it comes from): the data-sheet figure of a known GPU, else the measured matmul."""
  known = gpu_peak(jax.local_devices()[0].device_kind, dtype) if jax.default_backend() == 'gpu' else None
  if known:
    return known[0], f'data sheet: {known[1]} dense {jnp.dtype(dtype).name}'
  return matmul['tflops'], f'measured: {matmul["size"]}^3 {matmul["dtype"]} matmul'


def jax_train(config, batch_size, steps, profile=None, real_batches=None):
  """Compile and time the training run's own step (`train_step.make_train_step`) on a synthetic batch; with
  `profile` (a directory), then trace 3 more steps there and add the device time per kernel. With
  `real_batches` (mesh -> iterator of training batches), also time `steps` steps fed by it, as training runs them
  (no wait for each step: `real_data.step_s` is the wall time of all over their number)."""
  mesh = sharding.make_mesh(tuple(config.mesh_shape))
  graphdef, state, state_sharding = sharding.create_sharded(train_step.train_state_maker(config, 1000), mesh)
  step = train_step.make_train_step(config, graphdef, state_sharding, mesh)
  batch = jax.device_put(synthetic_batch(config, batch_size), sharding.batch_sharding(mesh))

  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()

  metrics = None

  def one_step():
    nonlocal state, metrics
    state, metrics = compiled(state, batch)  # the state is donated: updated in place
    jax.block_until_ready(metrics)

  warmup_s = timed(one_step, 1)[0]
  result = summarize_times(timed(one_step, steps), batch_size)
  result.update(compile_s=compile_s, first_step_s=warmup_s, loss=float(metrics['loss']))
  if real_batches is not None:
    result['real_data'] = _real_data_steps(compiled, state, real_batches(mesh), batch_size, steps)
    state = result['real_data'].pop('state')
  if profile:
    profiling.trace(one_step, 3, profile)
    result['profile'] = profiling.kernel_table(profile, 3)
  if memory is not None:  # XLA's plan: parameters + optimizer state (arguments) and temporaries
    result['compiled_memory_bytes'] = {k: int(getattr(memory, f'{k}_size_in_bytes'))
                                       for k in ('argument', 'output', 'alias', 'temp')}
  return result, graphdef, state, batch


def _real_data_steps(compiled, state, batches, batch_size, steps):
  feed = lambda: {k: v for k, v in next(batches).items() if k in pipeline.TRAIN_KEYS}
  state, metrics = compiled(state, feed())  # the first batch waits for the workers to start
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, feed())
  jax.block_until_ready(metrics)
  total = time.perf_counter() - start
  batches.close()
  return {'step_s': total / steps, 'clips_per_s': steps * batch_size / total, 'steps': steps,
          'load_avg': load_average(), 'state': state}


def jax_inference(graphdef, state, batch, steps, input_config):
  """Compile and time the model's deterministic forward pass (evaluation mode, normalising the uint8 video on the
  device as prediction does) on the same batch."""
  model, _ = nnx.merge(graphdef, state)
  model_graphdef, params = nnx.split(model)
  outputs = ('boxes', 'landmarks', 'logits')

  def forward(p, video):
    video = device_input.model_video({'video': video}, input_config.mean, input_config.std)
    return {k: v for k, v in nnx.merge(model_graphdef, p)(video).items() if k in outputs}
  forward = jax.jit(forward)
  start = time.perf_counter()
  compiled = forward.lower(params, batch['video']).compile()
  compile_s = time.perf_counter() - start
  call = lambda: jax.block_until_ready(compiled(params, batch['video']))
  timed(call, 1)
  result = summarize_times(timed(call, steps), batch['video'].shape[0])
  result['compile_s'] = compile_s
  return result


def add_throughput(result, flops_per_clip, peak_tflops):
  result['tflops'] = result['clips_per_s'] * flops_per_clip / 1e12
  result['mfu'] = result['tflops'] / peak_tflops


def torch_train(config, batch_size, steps, threads):
  """The same encoder in PyTorch (transformers VideoMAE, SDPA attention) with mean pooling, fc_norm and a linear
  classifier (what `strategy='stl'` is in JAX), trained with cross-entropy and AdamW, timed like the JAX step."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  enc = config.model.encoder
  if enc.name != 'vit':
    raise ValueError(f'--compare=torch needs the VideoMAE ViT encoder, not {enc.name!r}')
  vc = models.vit.vit_config(enc.variant, tubelet_size=enc.tubelet_size, num_frames=config.num_frames,
                             image_size=config.image_size, ln_eps=enc.ln_eps)
  device = 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  hf_config = transformers.VideoMAEConfig(
      image_size=vc.image_size, patch_size=vc.patch_size, num_channels=3, num_frames=vc.num_frames,
      tubelet_size=vc.tubelet_size, hidden_size=vc.width, num_hidden_layers=vc.depth,
      num_attention_heads=vc.num_heads, intermediate_size=vc.mlp_dim, hidden_act='gelu', qkv_bias=True,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=vc.ln_eps, use_mean_pooling=True,
      num_labels=config.num_classes)
  model = transformers.VideoMAEForVideoClassification._from_config(hf_config, attn_implementation='sdpa')  # pylint: disable=protected-access
  model.to(device).train()
  o = config.optimizer
  opt = torch.optim.AdamW(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps,
                          weight_decay=o.weight_decay)
  video = torch.randn(batch_size, vc.num_frames, 3, vc.image_size, vc.image_size, device=device)
  labels = torch.randint(0, config.num_classes, (batch_size,), device=device)
  # bfloat16 as in JAX: float32 parameters, matmuls in bfloat16.
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=config.model.dtype == 'bfloat16')

  def one_step():
    with autocast:
      loss = torch.nn.functional.cross_entropy(model(pixel_values=video).logits.float(), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device == 'cuda':
      torch.cuda.synchronize()
    return loss

  first_step_s = timed(one_step, 1)[0]
  losses = []
  result = summarize_times(timed(lambda: losses.append(float(one_step().detach())), steps), batch_size)
  result.update(first_step_s=first_step_s, loss=losses[-1], threads=torch.get_num_threads(),
                device=device, torch_version=torch.__version__, transformers_version=transformers.__version__,
                attn_implementation=model.config._attn_implementation,  # pylint: disable=protected-access
                parameters=sum(p.numel() for p in model.parameters()))
  return result


def config_summary(config, batch_size):
  m = config.model
  return {'encoder': f'{m.encoder.name} {m.encoder.variant}', 'strategy': m.strategy, 'batch_size': batch_size,
          'num_frames': config.num_frames, 'image_size': config.image_size, 'dtype': m.dtype,
          'attention_impl': models.attention.resolve_impl(m.attention_impl, jnp.dtype(m.dtype)),
          'scan_layers': models.layer_stack.scan_layers(m.layer_loop), 'remat': m.remat,
          'encoder_frozen': m.encoder.frozen,
          'decoder': dict(m.decoder) if m.strategy != 'stl' else None}


def machine_summary():
  device = jax.local_devices()[0]
  return {'backend': jax.default_backend(), 'device_kind': device.device_kind, 'num_devices': jax.device_count(),
          'cpu_count': os.cpu_count(), 'cpu_affinity': len(os.sched_getaffinity(0))
          if hasattr(os, 'sched_getaffinity') else os.cpu_count(), 'processor': platform.processor() or
          platform.machine(), 'jax_version': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', '')}


def run(config, batch_size, steps=5, compare_torch=False, encoder_only=True, matmul_size=None, profile=None,
        real_batches=None, log=print):
  """The whole benchmark as one dict (see docs/BENCHMARKS.md for the fields)."""
  dtype = jnp.dtype(config.model.dtype)
  out = {'config': config_summary(config, batch_size), 'machine': machine_summary(), 'steps': steps}
  log(f'{out["config"]}\n{out["machine"]}')

  # On CPUs the peak is what one big matmul of the compute dtype reaches here and now (the cores are shared).
  size = matmul_size or (8192 if jax.default_backend() != 'cpu' else 3072)
  out['matmul'] = matmul_tflops(dtype, size, reps=max(steps, 3))
  peak, source = device_peak(dtype, out['matmul'])
  out['peak'] = {'tflops': peak, 'source': source}
  log(f'peak {peak:.3f} TFLOP/s ({source})')

  out['flops_per_clip'] = summary.clip_flops(config)
  fwd_bwd, fwd = out['flops_per_clip']['forward_backward'], out['flops_per_clip']['forward']

  out['train'], graphdef, state, batch = jax_train(config, batch_size, steps, profile, real_batches)
  add_throughput(out['train'], fwd_bwd, peak)
  log(f'train: {out["train"]["step_s"]:.4f} s/step, {out["train"]["clips_per_s"]:.3f} clips/s, '
      f'{out["train"]["tflops"]:.3f} TFLOP/s, MFU {100 * out["train"]["mfu"]:.1f}% '
      f'(compile {out["train"]["compile_s"]:.1f} s, load {out["train"]["load_avg"]})')
  if 'real_data' in out['train']:
    real = out['train']['real_data']
    log(f'train on real batches: {real["step_s"]:.4f} s/step, {real["clips_per_s"]:.3f} clips/s '
        f'(synthetic: {out["train"]["step_s"]:.4f} s/step)')
  if profile:
    table = out['train']['profile']
    log(f'device time {table["device_ms_per_step"]:.2f} ms/step (trace in {profile}); top kernels, ms/step:\n' +
        '\n'.join(f'{ms:9.3f} {n:6.1f}x {name[:110]}' for name, ms, n in table['kernels']))
  out['inference'] = jax_inference(graphdef, state, batch, steps, config.input)
  add_throughput(out['inference'], fwd, peak)
  log(f'inference: {out["inference"]["clips_per_s"]:.3f} clips/s, {out["inference"]["tflops"]:.3f} TFLOP/s')
  out['memory'] = {'device': device_memory(), 'host_peak_rss_bytes_jax': host_peak_rss()}
  del graphdef, state, batch
  gc.collect()

  # The encoder alone (+ its expression head): the cost that the decoders add, and what PyTorch is compared to.
  reference = out['train']
  if config.model.strategy != 'stl' and (encoder_only or compare_torch):
    stl = copy.deepcopy(config)
    stl.model.strategy = 'stl'
    ref, *_ = jax_train(stl, batch_size, steps)
    ref['flops_per_clip'] = summary.clip_flops(stl)
    add_throughput(ref, ref['flops_per_clip']['forward_backward'], peak)
    ref['step_ratio'] = out['train']['step_s'] / ref['step_s']  # full model / encoder only
    out['encoder_only'] = reference = ref
    log(f'encoder only (stl): {ref["step_s"]:.4f} s/step; full / encoder-only step time {ref["step_ratio"]:.3f}')
    gc.collect()

  if compare_torch:
    threads = out['machine']['cpu_affinity'] if jax.default_backend() == 'cpu' else None
    out['torch'] = torch_train(config, batch_size, steps, threads or os.cpu_count())
    out['torch']['jax_over_torch'] = reference['clips_per_s'] / out['torch']['clips_per_s']
    log(f'torch: {out["torch"]["step_s"]:.4f} s/step, {out["torch"]["clips_per_s"]:.3f} clips/s '
        f'({out["torch"]["threads"]} threads, {out["torch"]["attn_implementation"]}); '
        f'JAX / PyTorch clips/s {out["torch"]["jax_over_torch"]:.3f}')
  out['memory']['host_peak_rss_bytes'] = host_peak_rss()
  return out


def predict_throughput(checkpoint, videos, rounds=3, batch_size=8, workers=0, log=print):
  """Batch prediction (`mtcae_jax.predict.inference`, decoding included) over `videos`, `rounds` times after a warm-up.

  Each round is one pass over the videos as `python -m mtcae_jax.predict --video=...` makes it: decoding on
  `workers` threads ahead of the model, full batches of `batch_size`. Reports the median round's clips/s.
  """
  from mtcae_jax.predict import inference  # pylint: disable=g-import-not-at-top
  predictor = inference.load(checkpoint)
  paths = inference.expand(videos)

  def one_round():
    return list(inference.predict_many(predictor, paths, batch_size=batch_size, workers=workers))

  start = time.perf_counter()
  warm = one_round()  # compiles the model and warms the decoders
  first = time.perf_counter() - start
  failed = sorted({r['video'] for r in warm if 'error' in r})
  cpu = time.process_time()
  times = timed(one_round, rounds)
  cpu = (time.process_time() - cpu) / (rounds * len(paths))
  out = summarize_times(times, len(paths) - len(failed))  # clips predicted per second
  out = {'round_s': out.pop('step_s'), 'round_s_all': out.pop('step_s_all'), **out}
  out.update({'checkpoint': str(checkpoint), 'source': predictor.source, 'videos': len(paths), 'failed': failed,
              'rounds': rounds, 'batch_size': batch_size, 'workers': inference.decode_threads(workers),
              'num_frames': predictor.num_frames, 'image_size': predictor.image_size, 'first_round_s': first,
              'cpu_s_per_clip': cpu, 'host_peak_rss_bytes': host_peak_rss(), 'machine': machine_summary()})
  log(f'predict: {out["clips_per_s"]:.2f} clips/s ({len(paths)} videos x {rounds} rounds, median; '
      f'{len(failed)} unreadable; {cpu:.3f} CPU s a clip; load {out["load_avg"]})')
  return out
