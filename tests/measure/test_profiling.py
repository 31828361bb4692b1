"""profiling.kernel_table sums a trace's device kernels per step, leaving out host threads and derived lines."""

import gzip
import json

import pytest

from mtcae_jax.measure import profiling


def write_trace(root, events):
  folder = root / 'plugins' / 'profile' / '2026_11_26_11_00_00'
  folder.mkdir(parents=True)
  with gzip.open(folder / 'host.trace.json.gz', 'wt') as f:
    json.dump({'displayTimeUnit': 'ns', 'traceEvents': events}, f)


def test_kernel_table_sums_device_kernels_per_step(tmp_path):
  meta = [
      {'ph': 'M', 'pid': 1, 'name': 'process_name', 'args': {'name': '/device:GPU:0'}},
      {'ph': 'M', 'pid': 1, 'tid': 14, 'name': 'thread_name', 'args': {'name': 'Stream #14(Compute,Memset)'}},
      {'ph': 'M', 'pid': 1, 'tid': 2, 'name': 'thread_name', 'args': {'name': 'XLA Ops'}},
      {'ph': 'M', 'pid': 7, 'name': 'process_name', 'args': {'name': '/host:CPU'}},
      {'ph': 'M', 'pid': 7, 'tid': 3, 'name': 'thread_name', 'args': {'name': 'python'}},
  ]
  kernel = lambda name, dur, tid=14, pid=1: {'ph': 'X', 'pid': pid, 'tid': tid, 'ts': 0, 'dur': dur, 'name': name}
  events = meta + [kernel('gemm', 300.0), kernel('gemm', 500.0), kernel('memcpy128', 100.0),
                   kernel('gemm', 9000.0, tid=2),  # XLA's derived line: the same work again
                   kernel('PjitFunction(train_step)', 7000.0, tid=3, pid=7)]  # host side
  write_trace(tmp_path, events)
  table = profiling.kernel_table(tmp_path, steps=2)
  assert table['device_ms_per_step'] == pytest.approx((300 + 500 + 100) / 2 / 1e3)
  assert table['kernels'] == [('gemm', pytest.approx(0.4), 1.0), ('memcpy128', pytest.approx(0.05), 0.5)]


def test_kernel_table_without_a_trace(tmp_path):
  with pytest.raises(FileNotFoundError, match='trace.json.gz'):
    profiling.kernel_table(tmp_path, steps=1)
