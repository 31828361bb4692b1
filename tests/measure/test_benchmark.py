"""tools/benchmark.py end to end on a tiny config: valid JSON with the figures, with and without PyTorch."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from mtcae_jax.measure import speed, summary
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ('configs/default.py:variant=tiny,strategy={strategy} --config.num_frames=4 --config.image_size=32 '
        '--config.model.decoder.depth=2 --config.model.decoder.width=16 --config.model.decoder.head_dim=8 '
        '--config.model.decoder.mlp_dim=24')


def benchmark(tmp_path, strategy, *extra):
  out = tmp_path / 'bench.json'
  cmd = [sys.executable, 'tools/benchmark.py', f'--config={TINY.format(strategy=strategy).split()[0]}',
         *TINY.split()[1:], '--batch=2', '--steps=2', '--matmul_size=128', f'--json={out}', *extra]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=300)
  return json.loads(out.read_text())


def check_timing(section):
  assert section['step_s'] > 0 and section['clips_per_s'] > 0
  assert len(section['step_s_all']) == 2


@pytest.mark.slow
def test_benchmark_writes_all_figures(tmp_path):
  result = benchmark(tmp_path, 'cascaded', f'--profile={tmp_path / "trace"}')
  assert result['config']['encoder'] == 'vit tiny' and result['config']['batch_size'] == 2
  assert result['machine']['backend'] == 'cpu'
  config = tiny_config('cascaded')
  assert result['flops_per_clip'] == summary.clip_flops(config)
  train = result['train']
  check_timing(train)
  assert train['compile_s'] > 0 and train['tflops'] > 0 and 0 < train['mfu']
  assert train['compiled_memory_bytes']['argument'] > 0  # parameters and AdamW state
  check_timing(result['inference'])
  assert result['peak']['tflops'] == result['matmul']['tflops'] > 0 and result['peak']['source'].startswith('measured')
  assert result['memory']['host_peak_rss_bytes'] > 0 and result['memory']['device'] is None  # CPU: no allocator stats
  # The decoders are extra work on top of the encoder-only (stl) step.
  encoder_only = result['encoder_only']
  assert encoder_only['flops_per_clip']['forward_backward'] < result['flops_per_clip']['forward_backward']
  assert encoder_only['step_ratio'] == pytest.approx(train['step_s'] / encoder_only['step_s'])
  assert 'torch' not in result
  # --profile: a trace of 3 more steps; a CPU has no device lines to sum.
  assert list((tmp_path / 'trace' / 'plugins' / 'profile').glob('*/*.trace.json.gz'))
  assert train['profile'] == {'device_ms_per_step': 0.0, 'kernels': []}


@pytest.mark.slow
def test_benchmark_against_torch(tmp_path):
  pytest.importorskip('torch')
  pytest.importorskip('transformers')
  result = benchmark(tmp_path, 'stl', '--compare=torch')
  torch = result['torch']
  check_timing(torch)
  assert torch['attn_implementation'] == 'sdpa' and torch['threads'] >= 1
  assert torch['jax_over_torch'] == pytest.approx(result['train']['clips_per_s'] / torch['clips_per_s'])
  assert 'encoder_only' not in result  # stl is the encoder only already


def test_gpu_peak_by_card_name():
  assert speed.gpu_peak('NVIDIA H100 80GB HBM3', 'bfloat16') == (989.4, 'H100')  # SXM
  assert speed.gpu_peak('NVIDIA H100 PCIe', 'bfloat16') == (756.5, 'H100 PCIe')
  assert speed.gpu_peak('NVIDIA H200', 'float32') == (494.7, 'H200')  # float32 matmuls run as TF32
  assert speed.gpu_peak('NVIDIA H200 NVL', 'bfloat16') == (835.5, 'H200 NVL')
  assert speed.gpu_peak('Tesla T4', 'bfloat16') is None


def test_benchmark_of_batch_prediction(tmp_path):
  from mtcae_jax.pretrained import convert  # pylint: disable=g-import-not-at-top
  from mtcae_jax.data import demo_data  # pylint: disable=g-import-not-at-top
  convert.convert_checkpoint(str(ROOT / 'tests' / 'fixtures' / 'mae_dfer' / 'vit_tiny_finetune.pth'),
                             str(tmp_path / 'converted'), num_heads=4)
  clips = sorted(pathlib.Path(str(demo_data.RAW)).rglob('*.mp4'))[:3]
  (tmp_path / 'bad.mp4').write_bytes(b'not a video')
  out = tmp_path / 'predict.json'
  cmd = [sys.executable, 'tools/benchmark.py', f'--predict={tmp_path / "converted"}', '--steps=2',
         '--predict_batch=2', f'--json={out}'] + [f'--videos={p}' for p in [*clips, tmp_path / 'bad.mp4']]
  subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'), check=True, timeout=300)
  result = json.loads(out.read_text())['predict']
  assert result['videos'] == 4 and result['failed'] == [str(tmp_path / 'bad.mp4')]
  assert len(result['round_s_all']) == 2 and result['clips_per_s'] == pytest.approx(3 / result['round_s'])
  assert (result['num_frames'], result['image_size'], result['batch_size']) == (16, 64, 2)
  # Not a checkpoint: one line, status 2.
  bad = subprocess.run([sys.executable, 'tools/benchmark.py', f'--predict={tmp_path}'], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert bad.returncode == 2 and bad.stderr.startswith('error: ') and 'Traceback' not in bad.stderr, bad.stderr


def test_input_benchmark_and_real_data_steps(tmp_path, demo_data_dir):
  """--input: host clips/s with one worker process and the exact bytes a clip sends to the device (the demo config:
  8 frames of 64 px); --real_data: the train step also fed by the real pipeline."""
  data = [f'--config.data_dir={demo_data_dir}', '--config.input.num_workers=1', '--steps=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  run = lambda *args: subprocess.run([sys.executable, 'tools/benchmark.py', '--config=configs/demo.py', *data, *args],
                                     cwd=ROOT, env=env, check=True, timeout=300)
  run('--input', f'--json={tmp_path / "input.json"}')
  figures = json.loads((tmp_path / 'input.json').read_text())['input']
  assert figures['num_workers'] == 1 and figures['clips_per_s'] == figures['clips_per_s_per_worker'] > 0
  t, s = 8, 64
  # uint8 video, float32 boxes, landmarks and colour factors, bool face mask and mask, int32 label.
  assert figures['bytes_per_clip_to_device'] == t * s * s * 3 + t * 4 * 4 + t * 5 * 2 * 4 + t + 4 + 1 + 3 * 4
  assert figures['float32_video_bytes_per_clip'] == 4 * t * s * s * 3
  run('--real_data', '--noencoder_only', '--matmul_size=128', f'--json={tmp_path / "real.json"}')
  train = json.loads((tmp_path / 'real.json').read_text())['train']
  assert train['real_data']['steps'] == 2 and train['real_data']['clips_per_s'] > 0
