"""Hostile checkpoint files (issue 16, points 1, 2 and the reader's part of 4), all made here with the stdlib.

Each file would make the reader use far more memory than it holds, crash the interpreter, or end in a traceback;
each must instead be refused with one line naming the file. Amplifications are asserted with small files and a
tracemalloc peak, never by allocating what the file asks for.
"""
import collections
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from mtcae_jax.pretrained import formats, torch_reader
from mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint
from tests.pretrained.test_torch_reader import _global, _int, _str, _tuple  # hand-written pickle pieces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MB = 1 << 20


# ---------------------------------------------------------------- hand-written pickles and archives

def _tensor(key, offset, size, stride, numel, storage='FloatStorage'):
  """The opcodes that push one tensor (torch's _rebuild_tensor_v2 of storage `key`)."""
  pid = _tuple(_str('storage'), _global('torch', storage), _str(key), _str('cpu'), _int(numel))
  args = _tuple(pid + b'Q', _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b'\x89', b'N')
  return _global('torch._utils', '_rebuild_tensor_v2') + args + b'R'


def _dict(**items):
  """A protocol-2 pickle of {name: opcodes} (each value already opcodes)."""
  body = b''.join(_str(k) + v for k, v in items.items())
  return b'\x80\x02}(' + body + b'u.'


def _write_zip(path, pkl, records=(), byteorder=b'little', method=zipfile.ZIP_STORED):
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', pkl)
    zf.writestr('archive/byteorder', byteorder, compress_type=method)
    for key, raw in dict(records).items():
      zf.writestr(f'archive/data/{key}', raw, compress_type=method)
    zf.writestr('archive/version', '3\n')
  return path


def _write_safetensors(path, entries, data):
  """entries: {name: (shape, [begin, end])}, float32; `data` is the whole data section."""
  header = {name: {'dtype': 'F32', 'shape': list(shape), 'data_offsets': list(offsets)}
            for name, (shape, offsets) in entries.items()}
  raw = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(len(raw).to_bytes(8, 'little') + raw + data)
  return path


def _refused(path, match, limit=8 * MB):
  """load_checkpoint(path) must refuse the file in one line naming it, without using much memory."""
  tracemalloc.start()
  try:
    with pytest.raises(CheckpointError, match=match) as e:
      load_checkpoint(path)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  msg = str(e.value)
  assert '\n' not in msg and os.path.basename(str(path)) in msg, msg
  assert peak < limit, f'{peak / MB:.0f} MB used to refuse a {os.path.getsize(path) / MB:.2f} MB file'
  return msg


# ---------------------------------------------------------------- point 1: bounded memory

@pytest.mark.parametrize('size, stride', [
    ((4096, 4096), (0, 0)),      # 16 bytes of storage declared as 64 MB
    ((4, 4096, 1024), (1, 0, 1)),  # stride 0 in one dimension
    ((2048, 4), (1, 1)),         # rows that overlap by three elements
])
def test_views_larger_than_their_storage_are_refused(tmp_path, size, stride):
  path = _write_zip(tmp_path / 'stride0.pth', _dict(w=_tensor('0', 0, size, stride, 4096)),
                    {'0': np.zeros(4096, np.float32).tobytes()})
  assert os.path.getsize(path) < 20_000
  _refused(path, 'overlapping view')


def test_non_overlapping_views_still_load(tmp_path):
  base = np.arange(24, dtype=np.float32)
  pkl = _dict(t=_tensor('0', 0, (4, 6), (1, 4), 24), rows=_tensor('0', 6, (2, 6), (6, 1), 24),
              col=_tensor('0', 2, (4,), (6,), 24), one=_tensor('0', 5, (1, 3), (0, 1), 24),  # stride 0, size 1
              windows=_tensor('0', 0, (4, 3), (2, 1), 24))  # overlapping, but no larger than the storage
  out = load_checkpoint(_write_zip(tmp_path / 'views.pth', pkl, {'0': base.tobytes()}))
  np.testing.assert_array_equal(out['t'], base[:24].reshape(6, 4).T)
  np.testing.assert_array_equal(out['rows'], base[6:18].reshape(2, 6))
  np.testing.assert_array_equal(out['col'], base[2::6])
  np.testing.assert_array_equal(out['one'], base[5:8][None])
  np.testing.assert_array_equal(out['windows'], [base[i:i + 3] for i in (0, 2, 4, 6)])


def test_many_views_of_one_storage_are_bounded(tmp_path):
  # Each view is legal on its own; 400 copies of a 1 MB storage would be 400 MB.
  views = {f'v{i}': _tensor('0', 0, (MB // 4,), (1,), MB // 4) for i in range(400)}
  path = _write_zip(tmp_path / 'many.pth', _dict(**views), {'0': bytes(MB)})
  with pytest.raises(CheckpointError, match='tensor views copy') as e:
    load_checkpoint(path)
  assert '\n' not in str(e.value)


def test_a_deflated_storage_is_refused_before_it_is_read(tmp_path):
  # 64 MB of zeros deflate to about 64 KB; the pickle declares them honestly.
  numel = 16 * MB
  path = _write_zip(tmp_path / 'bomb.pth', _dict(w=_tensor('0', 0, (numel,), (1,), numel)),
                    {'0': bytes(4 * numel)}, method=zipfile.ZIP_DEFLATED)
  assert os.path.getsize(path) < MB
  _refused(path, 'compressed')


def test_a_deflated_record_larger_than_declared_is_refused_before_it_is_read(tmp_path):
  path = _write_zip(tmp_path / 'bomb2.pth', _dict(w=_tensor('0', 0, (4,), (1,), 4)),
                    {'0': bytes(64 * MB)}, method=zipfile.ZIP_DEFLATED)
  _refused(path, 'compressed')
  stored = _write_zip(tmp_path / 'big.pth', _dict(w=_tensor('0', 0, (4,), (1,), 4)), {'0': bytes(4 * MB)})
  _refused(stored, 'declares 4194304 bytes, expected 16')


def test_a_deflated_byteorder_record_is_refused(tmp_path):
  # 'little' and 64 MB of spaces: .strip() would make it valid, after reading it all.
  path = _write_zip(tmp_path / 'order.pth', _dict(a=_int(1)), byteorder=b'little' + b' ' * (64 * MB),
                    method=zipfile.ZIP_DEFLATED)
  _refused(path, 'compressed')
  long = _write_zip(tmp_path / 'order2.pth', _dict(a=_int(1)), byteorder=b'little' + b' ' * 100)
  _refused(long, 'byteorder')


def test_a_deflated_pickle_is_refused(tmp_path):
  path = tmp_path / 'pkl.pth'
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', b'\x80\x02(' + b'N' * (32 * MB) + b'l.', compress_type=zipfile.ZIP_DEFLATED)
  _refused(path, 'compressed')


@pytest.mark.parametrize('name, body', [
    ('sets', b'\x8f' * (256 << 10)),             # one byte each, a 216-byte set each
    ('marks', b'(' * (256 << 10)),                # each MARK keeps a new list
    ('memo', b']' + b'\x94' * (256 << 10)),       # each MEMOIZE a memo entry
    ('tuples', b'N' + b'\x85' * (256 << 10)),     # each TUPLE1 a tuple (refused here before the nesting)
])
def test_pickle_objects_are_bounded_by_the_pickle_size(tmp_path, monkeypatch, name, body):
  # Without the slack (64 MiB, for small files) the budget is 32 x 256 KB = 8 MB; unbounded, these are 16-55 MB.
  monkeypatch.setattr(torch_reader, '_SLACK', 0)
  _refused(_write_zip(tmp_path / f'{name}.pth', b'\x80\x04' + body + b'.'), 'Python objects from', limit=24 * MB)


def test_safetensors_entries_sharing_bytes_are_refused(tmp_path):
  # 512 entries on one 64 KB region would come back as 32 MB.
  entries = {f'w{i}': ((16384,), [0, 65536]) for i in range(512)}
  _refused(_write_safetensors(tmp_path / 'shared.safetensors', entries, bytes(65536)), 'overlaps another entry')


@pytest.mark.parametrize('entries, data, match', [
    ({'a': ((4,), [0, 16]), 'b': ((4,), [8, 24])}, 24, 'overlaps another entry'),
    ({'a': ((4,), [0, 16]), 'b': ((4,), [20, 36])}, 36, 'leaves a gap'),
    ({'a': ((4,), [4, 20])}, 20, 'leaves a gap'),
    ({'a': ((4,), [0, 16])}, 20, '4 bytes after the last'),
    ({'a': ((4,), [0, 16])}, 12, 'truncated'),
    ({'a': ((2, 2), [0, 12])}, 12, 'bad shape or data_offsets'),
    ({'a': ((True, 4), [0, 16])}, 16, 'bad shape or data_offsets'),
])
def test_safetensors_entries_must_tile_the_data(tmp_path, entries, data, match):
  _refused(_write_safetensors(tmp_path / 'bad.safetensors', entries, bytes(data)), match)


def test_safetensors_contiguous_entries_in_any_header_order_load(tmp_path):
  data = np.arange(10, dtype=np.float32).tobytes()
  entries = {'b': ((6,), [16, 40]), 'empty': ((0, 3), [16, 16]), 'a': ((2, 2), [0, 16])}
  out = load_checkpoint(_write_safetensors(tmp_path / 'ok.safetensors', entries, data))
  np.testing.assert_array_equal(out['a'], np.arange(4, dtype=np.float32).reshape(2, 2))
  np.testing.assert_array_equal(out['b'], np.arange(4, 10, dtype=np.float32))
  assert out['empty'].shape == (0, 3)


# ---------------------------------------------------------------- point 2: keys and nesting

def _load_in_subprocess(path):
  """A crash here (a C stack overflow) must not take the test run down with it."""
  code = ('import sys\nfrom mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint\n'
          'try:\n  load_checkpoint(sys.argv[1])\nexcept CheckpointError as e:\n  print(e)\n  sys.exit(2)\n')
  return subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True, text=True, cwd=ROOT,
                        timeout=120)


def test_a_deeply_nested_tuple_key_is_refused_not_a_crash(tmp_path):
  # A 150 KB file: {((((None,),),)...): None}, 150,000 deep. Hashing the key overflowed the C stack.
  key = b'N' + b'\x85' * 150_000
  path = _write_zip(tmp_path / 'deep_key.pth', b'\x80\x02}' + key + b'Ns.')
  result = _load_in_subprocess(path)
  assert result.returncode == 2, (result.returncode, result.stderr[-500:])
  assert 'deep_key.pth' in result.stdout and 'dict key or set member of type tuple' in result.stdout


@pytest.mark.parametrize('name, pkl', [
    ('tuple_key', b'\x80\x02}' + _tuple(_str('a'), _str('b')) + b'Ns.'),
    ('dict_opcode', b'\x80\x02(' + _tuple(_str('a')) + b'Nd.'),
    ('set_member', b'\x80\x02' + _global('__builtin__', 'set') + _tuple(b'(' + _tuple(b'N') + b'l') + b'R.'),
    ('ordered_dict_pairs', b'\x80\x02' + _global('collections', 'OrderedDict')
     + _tuple(b'(' + _tuple(_tuple(b'N'), b'N') + b'l') + b'R.'),
    ('frozenset', b'\x80\x04(' + _tuple(b'N') + b'\x91.'),
    ('set_additems', b'\x80\x04\x8f(' + _tuple(b'N') + b'\x90.'),
])
def test_keys_must_be_flat(tmp_path, name, pkl):
  _refused(_write_zip(tmp_path / f'{name}.pth', pkl), 'dict key or set member of type tuple')


def test_scalar_keys_and_sets_still_load(tmp_path):
  pkl = (b'\x80\x02}(' + _str('a') + _int(1) + _int(0) + _int(2) + b'N' + _int(3)
         + _str('s') + _global('__builtin__', 'set') + _tuple(b'(' + _int(1) + _str('x') + b'l') + b'R'
         + _str('od') + _global('collections', 'OrderedDict') + _tuple(b'(' + _tuple(_str('k'), _int(5)) + b'l')
         + b'Ru.')
  out = load_checkpoint(_write_zip(tmp_path / 'flat.pth', pkl))
  assert out == {'a': 1, 0: 2, None: 3, 's': {1, 'x'}, 'od': collections.OrderedDict(k=5)}
  assert type(out['od']) is collections.OrderedDict


@pytest.mark.parametrize('name, value', [
    ('tuples', b'N' + b'\x85' * 150_000),
    ('lists', b'(' * 2_000 + b']' + b'l' * 2_000),
    ('dicts', (b'}' + _str('k')) * 300 + b'N' + b's' * 300),
])
def test_deep_nesting_is_refused(tmp_path, name, value):
  _refused(_write_zip(tmp_path / f'deep_{name}.pth', b'\x80\x02}' + _str('a') + value + b's.'), 'nested more than')


def test_nesting_within_the_limit_and_shared_subtrees_load(tmp_path):
  # 50 deep is fine; so is a DAG whose paths number 2**60 (memoised by the pickle, walked once).
  deep = b'(' * 50 + b']' + b'l' * 50
  dag = (b']q\x00' + b'0' + b''.join(b'h' + bytes([i]) + b'h' + bytes([i]) + b'\x86q' + bytes([i + 1]) + b'0'
                                  for i in range(60)) + b'h' + bytes([60]))
  out = load_checkpoint(_write_zip(tmp_path / 'ok.pth', b'\x80\x02}(' + _str('a') + deep + _str('b') + dag + b'u.'))
  assert len(out['b']) == 2


def test_a_container_holding_itself_is_refused(tmp_path):
  pkl = b'\x80\x02}' + _str('a') + b']q\x00h\x00as.'  # l = []; l.append(l)
  _refused(_write_zip(tmp_path / 'cycle.pth', pkl), 'holds itself')


@pytest.mark.parametrize('pkl', [
    b'\x80\x02' + _int(1) + b'N' + _int(2) + b's.',               # SETITEM on an int
    b'\x80\x02' + b'}' + b'N' + b'a.',                               # APPEND to a dict
    b'\x80\x02' + b'}' + b'(N' + b'e.',                              # APPENDS to a dict
    b'\x80\x02' + b'\x82\x01.',                                      # an extension code
])
def test_items_go_only_into_real_containers(tmp_path, pkl):
  _refused(_write_zip(tmp_path / 'target.pth', pkl), 'refused')


# ---------------------------------------------------------------- point 4 (reading): one line, not a traceback

@pytest.mark.parametrize('state', [b'}' + _str('items') + _int(1) + b's', b'}' + _str('__class__') + b'Ns'])
def test_ordered_dict_state_cannot_hide_its_methods(tmp_path, state):
  pkl = b'\x80\x02}' + _str('model') + _global('collections', 'OrderedDict') + b')R' + state + b'bs.'
  _refused(_write_zip(tmp_path / 'hide.pth', pkl), 'would hide an attribute of OrderedDict')


def test_namespace_fields_still_load(tmp_path):
  pkl = (b'\x80\x02}' + _str('args') + _global('argparse', 'Namespace') + b')\x81}(' + _str('model') + _str('x')
         + _str('input_size') + _int(160) + b'ubs.')
  out = load_checkpoint(_write_zip(tmp_path / 'ns.pth', pkl))
  assert vars(out['args']) == {'model': 'x', 'input_size': 160}


def test_a_deeply_nested_safetensors_header_is_one_line(tmp_path):
  header = b'{"a":' + b'[' * 100_000 + b']' * 100_000 + b'}'
  path = tmp_path / 'deep.safetensors'
  path.write_bytes(len(header).to_bytes(8, 'little') + header)
  _refused(path, 'nested too deeply')


@pytest.mark.parametrize('header', [b'[]', b'{"a": 1}', b'{"a": {"dtype": "F32"}}', b'{"a": {"dtype": [1], '
                                    b'"shape": [1], "data_offsets": [0, 4]}}'])
def test_malformed_safetensors_headers_are_one_line(tmp_path, header):
  path = tmp_path / 'odd.safetensors'
  path.write_bytes(len(header).to_bytes(8, 'little') + header + bytes(4))
  _refused(path, 'safetensors')


def test_zero_dimensional_hugging_face_query_weight_is_one_line(tmp_path):
  tensors = {'embeddings.patch_embeddings.projection.weight': ((4, 3, 2, 4, 4), None)}
  for part in ('query', 'key', 'value'):
    tensors[f'encoder.layer.0.attention.attention.{part}.weight'] = ((), None) if part == 'query' else ((4, 4), None)
  pos, entries = 0, {}
  for name, (shape, _) in tensors.items():
    n = 4 * int(np.prod(shape))
    entries[name], pos = (shape, [pos, pos + n]), pos + n
  path = _write_safetensors(tmp_path / 'hf.safetensors', entries, bytes(pos))
  with pytest.raises(CheckpointError, match=r"'encoder\.layer\.0\.attention\.attention\.query\.weight' has shape "
                                            r'\(\), expected \(width, width\)') as e:
    formats.read(path)
  assert '\n' not in str(e.value)


def test_the_command_says_one_error_line(tmp_path):
  """Through `python -m mtcae_jax.pretrained`: one `error:` line naming the file, exit status 2."""
  stride0 = _write_zip(tmp_path / 'stride0.pth', _dict(w=_tensor('0', 0, (1 << 20, 1 << 20), (0, 0), 4)),
                       {'0': bytes(16)})
  deep_key = _write_zip(tmp_path / 'deep_key.pth', b'\x80\x02}' + b'N' + b'\x85' * 150_000 + b'Ns.')
  for path in (stride0, deep_key):
    command = [sys.executable, '-m', 'mtcae_jax.pretrained', f'--src={path}', f'--out={tmp_path / "out"}']
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert result.returncode == 2, (path, result.returncode, result.stderr[-500:])
    assert result.stderr.startswith('error: ') and result.stderr.count('\n') == 1, result.stderr
    assert os.path.basename(path) in result.stderr and 'refused' in result.stderr, result.stderr
