"""Tests for mtcae_jax.pretrained.torch_reader; comparisons with real torch/safetensors skip without them."""
import argparse
import collections
import json
import os
import pickle
import pickletools
import zipfile

import ml_dtypes
import numpy as np
import pytest

from mtcae_jax.pretrained import torch_reader
from mtcae_jax.pretrained.torch_reader import CheckpointError, load_checkpoint, load_safetensors, load_torch_zip


# ---------------------------------------------------------------- helpers (no torch needed)

def _write_torch_zip(path, pkl: bytes, records=None, prefix='archive'):
  """Write a torch-zip-shaped archive: <prefix>/data.pkl plus <prefix>/data/<key> records."""
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr(f'{prefix}/data.pkl', pkl)
    zf.writestr(f'{prefix}/byteorder', 'little')
    for key, raw in (records or {}).items():
      zf.writestr(f'{prefix}/data/{key}', raw)
    zf.writestr(f'{prefix}/version', '3\n')
  return path


def _write_safetensors(path, tensors: dict, dtype='F32'):
  header, blobs, pos = {'__metadata__': {'format': 'np'}}, [], 0
  for name, arr in tensors.items():
    raw = np.ascontiguousarray(arr).tobytes()
    header[name] = {'dtype': dtype, 'shape': list(arr.shape),
                    'data_offsets': [pos, pos + len(raw)]}
    blobs.append(raw)
    pos += len(raw)
  h = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(len(h).to_bytes(8, 'little') + h + b''.join(blobs))
  return path


# Hand-assembled protocol-2 pickle pieces, for tensors and attacks torch itself would not write.
def _global(module, name):
  return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _str(s):
  return b'X' + len(s.encode()).to_bytes(4, 'little') + s.encode()


def _int(i):
  return b'J' + i.to_bytes(4, 'little', signed=True)


def _tuple(*items):
  return b'(' + b''.join(items) + b't'


def _tensor_pkl(offset, size, stride, numel, storage='FloatStorage'):
  pid = _tuple(_str('storage'), _global('torch', storage), _str('0'), _str('cpu'), _int(numel))
  args = _tuple(pid + b'Q', _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)),
                b'\x89', b'N')
  return b'\x80\x02' + _global('torch._utils', '_rebuild_tensor_v2') + args + b'R.'


class _Evil:
  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _check_error(exc_info, path):
  msg = str(exc_info.value)
  assert '\n' not in msg and os.path.basename(str(path)) in msg, msg
  return msg


# ---------------------------------------------------------------- torch comparison

def _np_dtype(torch, dt):
  if dt == torch.bfloat16:
    return np.dtype(ml_dtypes.bfloat16)
  return torch.empty(0, dtype=dt).numpy().dtype


def _assert_same(torch, ours, ref, where='root'):
  if isinstance(ref, torch.Tensor):
    assert isinstance(ours, np.ndarray), where
    assert ours.shape == tuple(ref.shape) and ours.dtype == _np_dtype(torch, ref.dtype), where
    assert ours.flags.c_contiguous and ours.flags.writeable, where
    ref = ref.detach()
    if ref.dtype == torch.bfloat16:  # numpy has no bfloat16: compare the bits
      ref, ours = ref.view(torch.int16), ours.view(np.int16)
    assert ours.tobytes() == ref.contiguous().numpy().tobytes(), where
  elif isinstance(ref, argparse.Namespace):
    assert type(ours) is argparse.Namespace, where
    _assert_same(torch, vars(ours), vars(ref), where)
  elif isinstance(ref, dict):
    assert type(ours) is type(ref) and list(ours) == list(ref), where
    for k in ref:
      _assert_same(torch, ours[k], ref[k], f'{where}.{k}')
  elif isinstance(ref, (list, tuple)):
    assert type(ours) is type(ref) and len(ours) == len(ref), where
    for i, (o, r) in enumerate(zip(ours, ref)):
      _assert_same(torch, o, r, f'{where}[{i}]')
  else:
    assert type(ours) is type(ref) and ours == ref, where


def test_torch_save_roundtrip(tmp_path):
  torch = pytest.importorskip('torch')
  g = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, generator=g)
  base[0, 0] = float('nan')
  model = collections.OrderedDict(
      f32=base,
      f16=torch.tensor([1.0, -2.5, float('inf'), 6e-8], dtype=torch.float16),
      bf16=torch.randn(3, 5, generator=g).to(torch.bfloat16),
      f64=torch.randn(2, 3, dtype=torch.float64, generator=g),
      i64=torch.tensor([-(2**62), 0, 2**62 + 7]),
      i32=torch.randint(-(2**31), 2**31 - 1, (7,), dtype=torch.int32, generator=g),
      i8=torch.arange(-128, 128, dtype=torch.int8).reshape(16, 16),
      u8=torch.arange(256, dtype=torch.uint8),
      boolean=torch.randn(5, 2, generator=g) > 0,
      scalar=torch.tensor(3.25),
      empty=torch.zeros(0, 7),
      empty_int=torch.zeros(3, 0, dtype=torch.int64),
      transposed=base.t(),            # non-contiguous view of base's storage
      rows=base[1:3],                 # views sharing base's storage, at offsets
      block=base[2:, 1:4],
      param=torch.nn.Parameter(torch.randn(3, 2, generator=g)),
  )
  obj = {
      'model': model,
      'epoch': 99,
      'args': argparse.Namespace(model='x', depth=2, input_size=160, lst=[1, 2], tup=(2, 5, 10),
                                 lr=1.5e-4, opt=None, flags={'a': True}),
      'optimizer': {'state': {0: {'step': torch.tensor(10.0), 'exp_avg': torch.ones(2, 3)}},
                    'param_groups': [{'lr': 1e-3, 'betas': (0.9, 0.999), 'params': [0, 1],
                                      'nested': [[1, [2, {'k': 'v'}]], {}]}]},
      'set': {1, 2, 3},
  }
  path = tmp_path / 'model.pth'
  torch.save(obj, path)
  ours, ref = load_checkpoint(path), torch.load(path, weights_only=False)
  _assert_same(torch, ours, ref)
  m = ours['model']
  np.testing.assert_array_equal(m['block'], m['f32'][2:, 1:4])
  assert not np.shares_memory(m['rows'], m['f32'])  # results are independent copies
  assert load_torch_zip(path).keys() == ours.keys()


def test_torch_module_state_dict_and_v3_tensors(tmp_path):
  torch = pytest.importorskip('torch')
  net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
  opt = torch.optim.AdamW(net.parameters())
  net(torch.randn(5, 3)).sum().backward()
  opt.step()
  p = torch.nn.Parameter(torch.ones(2))
  p.extra = 'state'  # makes torch write _rebuild_parameter_with_state
  obj = {'model': net.state_dict(), 'optimizer': opt.state_dict(), 'p': p,
         # dtypes without a legacy storage class go through _rebuild_tensor_v3
         'u16': torch.arange(5).to(torch.uint16), 'f8': torch.ones(3, dtype=torch.float8_e4m3fn)}
  path = tmp_path / 'pytorch_model.bin'
  torch.save(obj, path)
  ours, ref = load_checkpoint(path), torch.load(path, weights_only=False)
  assert ours['model']._metadata == ref['model']._metadata  # set through pickle BUILD
  _assert_same(torch, ours['model'], ref['model'])
  _assert_same(torch, ours['optimizer'], ref['optimizer'])
  _assert_same(torch, ours['p'], ref['p'])
  np.testing.assert_array_equal(ours['u16'], np.arange(5, dtype=np.uint16))
  assert ours['f8'].dtype == ml_dtypes.float8_e4m3fn and (ours['f8'].astype(np.float32) == 1).all()


def test_torch_globals_are_whitelisted(tmp_path):
  """What torch actually writes into data.pkl must all be resolvable by our reader."""
  torch = pytest.importorskip('torch')
  obj = {'m': torch.nn.Linear(2, 2).state_dict(), 'args': argparse.Namespace(a=1),
         'p': torch.nn.Parameter(torch.ones(1)), 'b': torch.ones(1, dtype=torch.bfloat16)}
  path = tmp_path / 'x.pth'
  torch.save(obj, path)
  with zipfile.ZipFile(path) as zf:
    pkl = zf.read(next(n for n in zf.namelist() if n.endswith('/data.pkl')))
  seen = {tuple(arg.split(' ')) for op, arg, _ in pickletools.genops(pkl) if op.name == 'GLOBAL'}
  assert seen and seen <= set(torch_reader._SAFE_GLOBALS), seen - set(torch_reader._SAFE_GLOBALS)


def test_dispatch_on_content_not_extension(tmp_path):
  torch = pytest.importorskip('torch')
  path = tmp_path / 'really_a_zip.safetensors'
  torch.save({'w': torch.ones(2)}, path)
  np.testing.assert_array_equal(load_checkpoint(path)['w'], np.ones(2, np.float32))


# ---------------------------------------------------------------- hand-made torch zips (no torch)

def test_hand_made_zip_strided_view(tmp_path):
  storage = np.arange(6, dtype=np.float32)
  path = _write_torch_zip(tmp_path / 'v.pth', _tensor_pkl(1, (2, 2), (1, 2), 6),
                          {'0': storage.tobytes()})
  np.testing.assert_array_equal(load_checkpoint(path), np.array([[1, 3], [2, 4]], np.float32))
  pkl = pickle.dumps({'epoch': 3, 'x': [1.5, None]}, protocol=2)
  plain = _write_torch_zip(tmp_path / 'plain.pt', pkl)
  assert load_checkpoint(plain) == {'epoch': 3, 'x': [1.5, None]}


@pytest.mark.parametrize('offset,size,stride,numel', [
    (0, (2, 3), (3, 1000), 6),      # stride past the storage
    (5, (2,), (1,), 6),             # offset + extent past the storage
    (0, (-1,), (1,), 6),            # negative size
    (0, (2, 2), (1,), 6),           # rank mismatch
    (0, (6,), (1,), 7),             # numel disagrees with the record's size
])
def test_hostile_tensor_geometry(tmp_path, offset, size, stride, numel):
  raw = np.arange(6, dtype=np.float32).tobytes()
  path = _write_torch_zip(tmp_path / 'geom.pth', _tensor_pkl(offset, size, stride, numel), {'0': raw})
  with pytest.raises(CheckpointError) as e:
    load_checkpoint(path)
  _check_error(e, path)


def test_missing_storage_record(tmp_path):
  path = _write_torch_zip(tmp_path / 'norec.pth', _tensor_pkl(0, (2,), (1,), 2))
  with pytest.raises(CheckpointError) as e:
    load_checkpoint(path)
  _check_error(e, path)


# ---------------------------------------------------------------- hostile pickles

@pytest.mark.parametrize('protocol', [2, 4])
@pytest.mark.parametrize('payload', ['system', 'eval', 'popen'])
def test_hostile_pickle_in_zip_is_refused(tmp_path, protocol, payload):
  import subprocess
  marker = tmp_path / 'pwned'
  evil = {'system': _Evil(os.system, f'touch {marker}'),
          'eval': _Evil(eval, f"open({str(marker)!r}, 'w')"),
          'popen': _Evil(subprocess.Popen, ['touch', str(marker)])}[payload]
  obj = {'epoch': 1, 'model': collections.OrderedDict(a=[1]), 'x': evil}
  pkl = pickle.dumps(obj, protocol=protocol)
  path = _write_torch_zip(tmp_path / 'evil.pth', pkl)
  with pytest.raises(CheckpointError) as e:
    load_checkpoint(path)
  msg = _check_error(e, path)
  assert 'refused to load' in msg
  assert {'system': 'system', 'eval': 'eval', 'popen': 'Popen'}[payload] in msg
  assert not marker.exists()


def test_hostile_torch_save_is_refused(tmp_path):
  torch = pytest.importorskip('torch')
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.pth'
  torch.save({'model': {'w': torch.ones(2)}, 'x': _Evil(os.system, f'touch {marker}')}, path)
  with pytest.raises(CheckpointError) as e:
    load_checkpoint(path)
  msg = _check_error(e, path)
  assert "'os.system'" in msg or "'posix.system'" in msg
  assert not marker.exists()

  whole = tmp_path / 'whole_module.pth'
  torch.save(torch.nn.Linear(2, 2), whole)  # a pickled nn.Module, not a state dict
  with pytest.raises(CheckpointError, match=r"'torch\.nn\.modules\.linear\.Linear'"):
    load_checkpoint(whole)

  legacy = tmp_path / 'legacy.pth'
  torch.save({'x': _Evil(os.system, f'touch {marker}')}, legacy, _use_new_zipfile_serialization=False)
  with pytest.raises(CheckpointError, match='legacy') as e:
    load_checkpoint(legacy)
  _check_error(e, legacy)
  assert not marker.exists()


def test_bare_pickle_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'model.pkl'
  path.write_bytes(pickle.dumps({'x': _Evil(os.system, f'touch {marker}')}, protocol=4))
  with pytest.raises(CheckpointError, match='not a checkpoint') as e:
    load_checkpoint(path)
  _check_error(e, path)
  assert not marker.exists()


@pytest.mark.parametrize('state', [
    b'N}' + _str('pwned') + b'K\x01s\x86',  # (None, slotstate): setattr on the class
    b'}' + _str('pwned') + b'K\x01s',        # dict state on the class
])
def test_build_cannot_patch_whitelisted_class(tmp_path, state):
  pkl = b'\x80\x02' + _global('argparse', 'Namespace') + state + b'b.'
  path = _write_torch_zip(tmp_path / 'patch.pth', pkl)
  with pytest.raises(CheckpointError) as e:
    load_checkpoint(path)
  _check_error(e, path)
  assert not hasattr(argparse.Namespace, 'pwned')


# ---------------------------------------------------------------- safetensors

def test_safetensors_numpy(tmp_path):
  st = pytest.importorskip('safetensors.numpy')
  rng = np.random.default_rng(0)
  tensors = {'f64': rng.standard_normal((2, 3)), 'f32': rng.standard_normal((4,)).astype(np.float32),
             'f16': rng.standard_normal((3, 1)).astype(np.float16), 'i64': np.arange(-3, 3),
             'i32': np.arange(6, dtype=np.int32).reshape(2, 3), 'i16': np.arange(4, dtype=np.int16),
             'i8': np.arange(-5, 5, dtype=np.int8), 'u8': np.arange(9, dtype=np.uint8).reshape(3, 3),
             'b': rng.standard_normal(5) > 0, 'scalar': np.array(2.5, np.float32),
             'empty': np.zeros((0, 3), np.float32)}
  path = tmp_path / 'model.safetensors'
  st.save_file(tensors, str(path), metadata={'format': 'np'})
  ours = load_checkpoint(path)
  assert set(ours) == set(tensors)
  for k, v in tensors.items():
    assert ours[k].dtype == v.dtype and ours[k].shape == v.shape, k
    assert ours[k].tobytes() == v.tobytes(), k
    assert ours[k].flags.writeable


def test_safetensors_torch_bfloat16(tmp_path):
  torch = pytest.importorskip('torch')
  st = pytest.importorskip('safetensors.torch')
  g = torch.Generator().manual_seed(0)
  tensors = {'bf16': torch.randn(3, 4, generator=g).to(torch.bfloat16),
             'f32': torch.randn(5, generator=g), 'i64': torch.arange(4)}
  path = tmp_path / 'model.safetensors'
  st.save_file(tensors, str(path))
  ours = load_safetensors(path)
  for k, v in tensors.items():
    _assert_same(torch, ours[k], v, k)


def test_safetensors_hand_written(tmp_path):
  path = _write_safetensors(tmp_path / 'm.safetensors', {'a': np.arange(4, dtype=np.float32)})
  np.testing.assert_array_equal(load_checkpoint(path)['a'], np.arange(4, dtype=np.float32))


# ---------------------------------------------------------------- not checkpoints / damaged files

def _damaged_files(tmp_path):
  rnd = tmp_path / 'random.pth'
  rnd.write_bytes(np.random.default_rng(0).bytes(4096))
  text = tmp_path / 'notes.pth'
  text.write_text('this is a text file\nnot a checkpoint\n')
  good = _write_torch_zip(tmp_path / 'good.pth', _tensor_pkl(0, (1024,), (1,), 1024),
                          {'0': np.arange(1024, dtype=np.float32).tobytes()})
  cut_zip = tmp_path / 'cut.pth'
  cut_zip.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
  flipped = tmp_path / 'flipped.pth'  # central directory intact, storage bytes damaged
  raw = bytearray(good.read_bytes())
  i = raw.index(np.arange(1024, dtype=np.float32)[100:104].tobytes())
  raw[i] ^= 0xFF
  flipped.write_bytes(bytes(raw))
  st = _write_safetensors(tmp_path / 'full.safetensors',
                          {'a': np.ones(64, np.float32), 'b': np.ones(8, np.float32)})
  cut_data = tmp_path / 'cut_data.safetensors'
  cut_data.write_bytes(st.read_bytes()[:-10])
  cut_header = tmp_path / 'cut_header.safetensors'
  cut_header.write_bytes(st.read_bytes()[:40])
  bad_dtype = _write_safetensors(tmp_path / 'bad_dtype.safetensors', {'a': np.ones(2, np.float32)},
                                 dtype='F33')
  return [rnd, text, cut_zip, flipped, cut_data, cut_header, bad_dtype, tmp_path / 'missing.pth',
          tmp_path]  # a directory


def test_damaged_and_foreign_files(tmp_path):
  for path in _damaged_files(tmp_path):
    with pytest.raises(CheckpointError) as e:
      load_checkpoint(path)
    _check_error(e, path)


def test_messages(tmp_path):
  text = tmp_path / 'notes.pth'
  text.write_text('hello')
  with pytest.raises(CheckpointError, match=r'notes\.pth: not a checkpoint \(neither a torch zip'):
    load_checkpoint(text)
  good = _write_torch_zip(tmp_path / 'good.pth', pickle.dumps({'a': 1}, protocol=2), {'0': b'\0' * 4096})
  cut = tmp_path / 'cut.pth'
  cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
  with pytest.raises(CheckpointError, match='truncated or corrupt zip archive'):
    load_checkpoint(cut)
  with pytest.raises(CheckpointError, match='truncated or corrupt zip archive'):
    load_torch_zip(text)
  st = _write_safetensors(tmp_path / 'm.safetensors', {'a': np.ones(64, np.float32)})
  cut_st = tmp_path / 'cut.safetensors'
  cut_st.write_bytes(st.read_bytes()[:-1])
  with pytest.raises(CheckpointError, match='truncated safetensors'):
    load_checkpoint(cut_st)
  with pytest.raises(CheckpointError, match='missing.pth: cannot read file'):
    load_checkpoint(tmp_path / 'missing.pth')
  with pytest.raises(CheckpointError, match='not a safetensors file'):
    load_safetensors(text)
  assert issubclass(CheckpointError, ValueError)
