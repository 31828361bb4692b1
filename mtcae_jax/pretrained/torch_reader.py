"""Safe, torch-free reading of PyTorch (.pth/.pt/.bin) and safetensors checkpoints.

A torch checkpoint is a pickle, and unpickling calls whatever the file names, so ``torch.load`` on
a hostile file can run arbitrary code. Here only a short whitelist of globals resolves, each to a
small reimplementation in this module (never to torch), so loading cannot execute code and works
where PyTorch is not installed (e.g. TPU VMs). Tensors come back as contiguous NumPy arrays;
bfloat16 and float8 use ``ml_dtypes``.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pickle
import sys
import zipfile
import zlib

import ml_dtypes
import numpy as np


class CheckpointError(ValueError):
  """A checkpoint could not be read or was refused; the message is one line naming the file."""


def _err(path, msg: str) -> CheckpointError:
  return CheckpointError(f'{os.fsdecode(path)}: {msg}'.replace('\n', ' '))


_DTYPES = {  # torch dtype name -> NumPy dtype
    'float64': np.float64, 'float32': np.float32, 'float16': np.float16,
    'bfloat16': ml_dtypes.bfloat16, 'float8_e4m3fn': ml_dtypes.float8_e4m3fn,
    'float8_e5m2': ml_dtypes.float8_e5m2, 'complex64': np.complex64, 'complex128': np.complex128,
    'int64': np.int64, 'int32': np.int32, 'int16': np.int16, 'int8': np.int8,
    'uint64': np.uint64, 'uint32': np.uint32, 'uint16': np.uint16, 'uint8': np.uint8,
    'bool': np.bool_,
}
_STORAGES = {  # legacy typed-storage class names, which torch 2.x still writes into pickles
    'DoubleStorage': 'float64', 'FloatStorage': 'float32', 'HalfStorage': 'float16',
    'BFloat16Storage': 'bfloat16', 'ComplexFloatStorage': 'complex64',
    'ComplexDoubleStorage': 'complex128', 'LongStorage': 'int64', 'IntStorage': 'int32',
    'ShortStorage': 'int16', 'CharStorage': 'int8', 'ByteStorage': 'uint8', 'BoolStorage': 'bool',
}
_ST_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16,
              'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8,
              'BOOL': np.bool_}
_MAX_ST_HEADER = 100_000_000  # the safetensors spec's limit
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, 'little')  # first pickle of pre-1.6 files


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


def _from_bytes(buf, dtype: np.dtype, byteorder: str) -> np.ndarray:
  arr = np.frombuffer(buf, dtype)
  return arr.byteswap() if byteorder != sys.byteorder and dtype.itemsize > 1 else arr


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
  """torch._utils._rebuild_tensor(_v2): a strided view of a storage, returned as a copy."""
  if not (isinstance(storage, np.ndarray) and storage.ndim == 1 and storage.flags.c_contiguous):
    raise pickle.UnpicklingError('tensor is not backed by a storage')
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride) or not all(
      isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)):
    raise pickle.UnpicklingError(f'bad tensor geometry {offset}, {size}, {stride}')
  if 0 in size:
    return np.zeros(size, storage.dtype)
  # as_strided does no bounds checking, so a lying pickle could otherwise read stray memory.
  if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.size:
    raise pickle.UnpicklingError(f'tensor {size} at offset {offset} overruns its storage')
  strides = [s * storage.itemsize for s in stride]
  return np.lib.stride_tricks.as_strided(storage[offset:], size, strides).copy()


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_ignored):
  # v3 is written for dtypes without a legacy storage class: the storage is untyped bytes.
  if not isinstance(dtype, np.dtype) or not isinstance(storage, np.ndarray):
    raise pickle.UnpicklingError('bad _rebuild_tensor_v3 arguments')
  return _rebuild_tensor(storage.view(dtype), offset, size, stride)


def _rebuild_parameter(data, *_ignored):  # also _rebuild_parameter_with_state: the state is dropped
  return data


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('argparse', 'Namespace'): argparse.Namespace,
    ('builtins', 'set'): set, ('__builtin__', 'set'): set,  # protocol 2 spells it __builtin__
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch', 'UntypedStorage'): _StorageType(np.uint8),
    ('torch.storage', 'UntypedStorage'): _StorageType(np.uint8),
    **{('torch', name): _StorageType(_DTYPES[dt]) for name, dt in _STORAGES.items()},
    **{('torch', name): np.dtype(dt) for name, dt in _DTYPES.items()},
}


class _Unpickler(pickle._Unpickler):
  # The pure-Python unpickler, because only its opcode table can be restricted: the C one lets
  # BUILD setattr on any object, e.g. monkeypatch the whitelisted argparse.Namespace class.
  dispatch = dict(pickle._Unpickler.dispatch)

  def __init__(self, file, path, zf: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(file, encoding='utf-8')
    self._path, self._zf, self._prefix, self._byteorder = path, zf, prefix, byteorder
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module, name):
    try:
      return _SAFE_GLOBALS[module, name]
    except KeyError:
      raise _err(self._path, f"refused to load: pickle asks for '{module}.{name}', "
                             'which is not allowed') from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
            and isinstance(pid[4], int)):
      raise pickle.UnpicklingError(f'unsupported persistent id {str(pid)[:80]}')
    _, storage_type, key, _location, numel = pid
    dtype = storage_type.dtype
    if key not in self._storages:
      raw = self._zf.read(f'{self._prefix}/data/{key}')  # KeyError if the record is missing
      if len(raw) != numel * dtype.itemsize:
        raise pickle.UnpicklingError(f'storage {key} holds {len(raw)} bytes, '
                                     f'expected {numel} x {dtype.itemsize}')
      self._storages[key] = _from_bytes(raw, dtype, self._byteorder)
    if self._storages[key].dtype != dtype:
      raise pickle.UnpicklingError(f'storage {key} is used with two dtypes')
    return self._storages[key]

  def load_build(self):
    state = self.stack.pop()
    inst = self.stack[-1]
    # Torch writes BUILD only for plain attributes (state_dict()._metadata, Namespace fields).
    if (type(inst) not in (collections.OrderedDict, argparse.Namespace)
        or not isinstance(state, dict) or not all(isinstance(k, str) for k in state)):
      raise pickle.UnpicklingError(f'refused to set state on a {type(inst).__name__}')
    vars(inst).update(state)

  dispatch[pickle.BUILD[0]] = load_build


def load_torch_zip(path) -> object:
  """Load a torch zip-format checkpoint (torch >= 1.6 ``torch.save``); tensors become arrays."""
  try:
    with zipfile.ZipFile(path) as zf:
      pkls = [n for n in zf.namelist() if n.count('/') == 1 and n.endswith('/data.pkl')]
      if len(pkls) != 1:
        raise _err(path, 'not a torch checkpoint (zip archive without one */data.pkl)')
      prefix = pkls[0][: -len('/data.pkl')]
      byteorder = sys.byteorder  # what torch assumes when the record is absent
      if f'{prefix}/byteorder' in zf.namelist():
        byteorder = zf.read(f'{prefix}/byteorder').decode('ascii', 'replace').strip()
        if byteorder not in ('little', 'big'):
          raise _err(path, f'unknown byte order {byteorder[:20]!r}')
      with zf.open(pkls[0]) as f:
        return _Unpickler(f, path, zf, prefix, byteorder).load()
  except CheckpointError:
    raise
  except (zipfile.BadZipFile, zlib.error) as e:
    raise _err(path, f'truncated or corrupt zip archive ({e})') from None
  except OSError as e:
    raise _err(path, f'cannot read file ({e.strerror or e})') from None
  except Exception as e:  # a malformed pickle can fail in many ways; all mean a bad file
    raise _err(path, f'corrupt checkpoint ({type(e).__name__}: {str(e)[:200]})') from None


def _read_safetensor(f, path, name, info, data_start, file_size):
  if info['dtype'] not in _ST_DTYPES:
    raise _err(path, f"unsupported safetensors dtype {info['dtype']!r} for {name!r}")
  dtype, shape = np.dtype(_ST_DTYPES[info['dtype']]), info['shape']
  begin, end = info['data_offsets']
  if not all(isinstance(v, int) and v >= 0 for v in (*shape, begin, end)) or (
      end - begin != math.prod(shape) * dtype.itemsize):
    raise _err(path, f'bad shape or data_offsets for {name!r}')
  if data_start + end > file_size:
    raise _err(path, f'truncated safetensors file ({name!r} ends past end of file)')
  buf = bytearray(end - begin)  # a bytearray, so that the arrays come back writable
  f.seek(data_start + begin)
  if f.readinto(buf) != len(buf):
    raise _err(path, f'truncated safetensors file (short read of {name!r})')
  return _from_bytes(buf, dtype, 'little').reshape(shape)


def load_safetensors(path) -> dict[str, np.ndarray]:
  """Load a .safetensors file by hand: 8-byte header length, JSON header, raw data."""
  try:
    with open(path, 'rb') as f:
      size = os.fstat(f.fileno()).st_size
      head = f.read(8)
      n = int.from_bytes(head, 'little') if len(head) == 8 else -1
      if not 2 <= n <= _MAX_ST_HEADER:
        raise _err(path, 'not a safetensors file (bad header length)')
      if 8 + n > size:
        raise _err(path, 'truncated safetensors file (header runs past end of file)')
      header = json.loads(f.read(n))
      out = {}
      for name, info in header.items():
        if name != '__metadata__':
          out[name] = _read_safetensor(f, path, name, info, 8 + n, size)
      return out
  except CheckpointError:
    raise
  except OSError as e:
    raise _err(path, f'cannot read file ({e.strerror or e})') from None
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    msg = f'corrupt safetensors header ({type(e).__name__}: {str(e)[:200]})'
    raise _err(path, msg) from None


def load_checkpoint(path) -> object:
  """Load a torch zip checkpoint or a safetensors file, chosen by content, not by extension."""
  try:
    with open(path, 'rb') as f:
      head = f.read(16)
  except OSError as e:
    raise _err(path, f'cannot read file ({e.strerror or e})') from None
  if head[:4] in (b'PK\x03\x04', b'PK\x05\x06'):
    return load_torch_zip(path)
  if head[8:9] == b'{' and int.from_bytes(head[:8], 'little') <= _MAX_ST_HEADER:
    return load_safetensors(path)
  if head[:1] == b'\x80' and _LEGACY_MAGIC in head:
    raise _err(path, 'legacy (pre-1.6, non-zip) torch format is not supported; re-save it '
                     'with torch.save(..., _use_new_zipfile_serialization=True)')
  if head[:1] == b'\x80':
    raise _err(path, 'not a checkpoint (a bare pickle; never unpickled, as it could run code)')
  raise _err(path, 'not a checkpoint (neither a torch zip archive nor safetensors)')
