"""Safe, torch-free reading of PyTorch (.pth/.pt/.bin) and safetensors checkpoints.

A torch checkpoint is a pickle, and unpickling calls whatever the file names, so ``torch.load`` on
a hostile file can run arbitrary code. Here only a short whitelist of globals resolves, each to a
small reimplementation in this module (never to torch), so loading cannot execute code and works
where PyTorch is not installed (e.g. TPU VMs). Tensors come back as contiguous NumPy arrays;
bfloat16 and float8 use ``ml_dtypes``.

Memory stays within a small multiple of the bytes the file holds: zip records must be stored
uncompressed (as torch writes them) with the size the pickle declares, a tensor view may not need
more elements than its storage holds (stride 0), all views together may not copy more than a few
times the storage bytes, the Python objects of the pickle are bounded by its size, and safetensors
entries must tile the data section. Dict keys and set members are flat scalars (hashing a deeply
nested tuple overflows the C stack) and containers nest at most ``MAX_DEPTH`` deep.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pickle
import reprlib
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
MAX_DEPTH = 100  # containers in a checkpoint nest a few levels deep; deeper is hostile
# Views may copy this multiple of the storage bytes read (tied weights, transposes), plus some slack.
_VIEW_FACTOR, _SLACK = 4, 64 << 20  # the slack also covers the pickle budget of small files
_PICKLE_FACTOR = 32  # the Python objects of a pickle: torch's own use about a tenth of this
# Types whose hash is flat: a tuple key nested 150,000 deep crashes the interpreter when hashed.
_KEY_TYPES = (str, int, bool, float, bytes, type(None))
_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother = 3, 40, 40


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
  if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
          and len(size) == len(stride) <= 64 and all(
              type(v) is int and v >= 0 for v in (offset, *size, *stride))):
    raise pickle.UnpicklingError(
        f'bad tensor geometry {_short.repr(offset)}, {_short.repr(size)}, {_short.repr(stride)}')
  size, stride = tuple(size), tuple(stride)
  if 0 in size:
    return np.zeros(size, storage.dtype)
  # as_strided does no bounds checking, so a lying pickle could otherwise read stray memory.
  if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.size:
    raise pickle.UnpicklingError(f'tensor {size} at offset {offset} overruns its storage')
  # A view whose elements overlap (stride 0, expand) is copied into more memory than its storage
  # holds: 16 bytes can declare terabytes. A view within bounds that does not overlap never needs more.
  if math.prod(size) > storage.size:
    raise pickle.UnpicklingError(f'refused: tensor {size} with strides {stride} needs {math.prod(size)} '
                                 f'elements, its storage holds {storage.size} (stride 0 or overlapping view)')
  strides = [s * storage.itemsize for s in stride]
  return np.lib.stride_tricks.as_strided(storage[offset:], size, strides).copy()


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_ignored):
  # v3 is written for dtypes without a legacy storage class: the storage is untyped bytes.
  if not isinstance(dtype, np.dtype) or not isinstance(storage, np.ndarray):
    raise pickle.UnpicklingError('bad _rebuild_tensor_v3 arguments')
  return _rebuild_tensor(storage.view(dtype), offset, size, stride)


def _key(k):
  if type(k) not in _KEY_TYPES:
    raise pickle.UnpicklingError(f'refused: a dict key or set member of type {type(k).__name__} '
                                 '(keys must be strings or numbers)')
  return k


def _ordered_dict(items=()):
  """collections.OrderedDict(items), with the keys checked before they are hashed."""
  if not isinstance(items, (list, tuple)):
    raise pickle.UnpicklingError('bad OrderedDict arguments')
  out = collections.OrderedDict()
  for k, v in items:
    out[_key(k)] = v
  return out


def _set(items=()):
  if not isinstance(items, (list, tuple)):
    raise pickle.UnpicklingError('bad set arguments')
  return set(map(_key, items))


def _rebuild_parameter(data, *_ignored):  # also _rebuild_parameter_with_state: the state is dropped
  return data


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): _ordered_dict,  # torch writes it as a call: REDUCE, not NEWOBJ
    ('argparse', 'Namespace'): argparse.Namespace,
    ('builtins', 'set'): _set, ('__builtin__', 'set'): _set,  # protocol 2 spells it __builtin__
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


def _read_record(zf: zipfile.ZipFile, name: str, size: int, archive_size: int) -> bytes:
  """A zip record of `size` bytes, checked before anything is read: stored, as torch writes it, so
  that its bytes are really in the file (a deflated record can expand a thousandfold)."""
  info = zf.getinfo(name)  # KeyError if the record is missing
  if info.compress_type != zipfile.ZIP_STORED:
    raise pickle.UnpicklingError(f'refused: record {name!r} is compressed (method '
                                 f'{info.compress_type}); torch writes records uncompressed')
  if info.file_size != size or info.compress_size != size or size > archive_size:
    raise pickle.UnpicklingError(f'record {name!r} declares {info.file_size} bytes, expected {size}')
  with zf.open(info) as f:
    raw = f.read(size)
  if len(raw) != size:
    raise pickle.UnpicklingError(f'record {name!r} is truncated')
  return raw


def _check_nesting(obj):
  """Refuse containers nested deeper than MAX_DEPTH, or holding themselves (iterative: no recursion)."""
  def children(o):
    if isinstance(o, dict):
      return iter(o.values())  # keys are flat scalars (_key)
    if isinstance(o, (list, tuple, set, frozenset)):
      return iter(o)
    if isinstance(o, argparse.Namespace):
      return iter(vars(o).values())
    return None

  heights, on_path = {}, set()  # id -> height of a finished container; ids on the current path
  frames = [[obj, children(obj), 0]]
  if frames[0][1] is None:
    return
  on_path.add(id(obj))
  while frames:
    frame = frames[-1]
    child = next(frame[1], frames)  # `frames` as the end marker: never an element
    if child is frames:
      frames.pop()
      on_path.discard(id(frame[0]))
      heights[id(frame[0])] = frame[2]
      if frames:
        frames[-1][2] = max(frames[-1][2], frame[2] + 1)
      continue
    if id(child) in heights:
      frame[2] = max(frame[2], heights[id(child)] + 1)
      continue
    it = children(child)
    if it is None:
      continue
    if id(child) in on_path:
      raise pickle.UnpicklingError('refused: a container that holds itself')
    if len(frames) >= MAX_DEPTH:
      raise pickle.UnpicklingError(f'refused: containers nested more than {MAX_DEPTH} deep')
    on_path.add(id(child))
    frames.append([child, it, 0])


class _Unpickler(pickle._Unpickler):
  # The pure-Python unpickler, because only its opcode table can be restricted: the C one lets
  # BUILD setattr on any object, e.g. monkeypatch the whitelisted argparse.Namespace class.
  dispatch = dict(pickle._Unpickler.dispatch)

  def __init__(self, file, path, zf: zipfile.ZipFile, prefix: str, byteorder: str, archive_size: int,
               pickle_size: int):
    super().__init__(file, encoding='utf-8')
    self._path, self._zf, self._prefix, self._byteorder = path, zf, prefix, byteorder
    self._archive_size = archive_size
    self._storages: dict[str, np.ndarray] = {}
    self._storage_bytes = self._view_bytes = self._pickle_bytes = 0
    self._pickle_size = pickle_size
    self._pickle_budget = _PICKLE_FACTOR * pickle_size + _SLACK

  def find_class(self, module, name):
    try:
      obj = _SAFE_GLOBALS[module, name]
    except KeyError:
      raise _err(self._path, f"refused to load: pickle asks for '{module}.{name}', "
                             'which is not allowed') from None
    return self._rebuild if obj is _rebuild_tensor else self._rebuild_v3 if obj is _rebuild_tensor_v3 else obj

  def _charge(self, out: np.ndarray):
    # Each view is an independent copy; together they may not exceed a few times what was read.
    self._view_bytes += out.nbytes
    if self._view_bytes > _VIEW_FACTOR * self._storage_bytes + _SLACK:
      raise pickle.UnpicklingError(f'refused: tensor views copy {self._view_bytes} bytes out of '
                                   f'{self._storage_bytes} bytes of storage')
    return out

  def _rebuild(self, *args):
    return self._charge(_rebuild_tensor(*args))

  def _rebuild_v3(self, *args):
    return self._charge(_rebuild_tensor_v3(*args))

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
            and type(pid[4]) is int and pid[4] >= 0):
      raise pickle.UnpicklingError(f'unsupported persistent id {_short.repr(pid)}')
    _, storage_type, key, _location, numel = pid
    dtype = storage_type.dtype
    if key not in self._storages:
      name = f'{self._prefix}/data/{key}'
      raw = _read_record(self._zf, name, numel * dtype.itemsize, self._archive_size)
      self._storage_bytes += len(raw)
      self._storages[key] = _from_bytes(raw, dtype, self._byteorder)
    if self._storages[key].dtype != dtype or self._storages[key].size != numel:
      raise pickle.UnpicklingError(f'storage {key} is used with two dtypes or sizes')
    return self._storages[key]

  def load_build(self):
    state = self.stack.pop()
    inst = self.stack[-1]
    # Torch writes BUILD only for plain attributes (state_dict()._metadata, Namespace fields); a
    # name the class has (OrderedDict.items) would hide its method.
    if (type(inst) not in (collections.OrderedDict, argparse.Namespace)
        or not isinstance(state, dict) or not all(isinstance(k, str) for k in state)):
      raise pickle.UnpicklingError(f'refused to set state on a {type(inst).__name__}')
    hidden = [k for k in state if k.startswith('__') or hasattr(type(inst), k)]
    if hidden:
      raise pickle.UnpicklingError(f'refused: state {hidden[0][:40]!r} would hide an attribute '
                                   f'of {type(inst).__name__}')
    vars(inst).update(state)

  # Keys are checked before they are hashed; items go only into real dicts, sets and lists.
  def _dict_target(self, index):
    target = self.stack[index]
    if type(target) not in (dict, collections.OrderedDict):
      raise pickle.UnpicklingError(f'refused: setting items on a {type(target).__name__}')
    return target

  def load_setitem(self):
    value = self.stack.pop()
    key = self.stack.pop()
    self._dict_target(-1)[_key(key)] = value

  def load_setitems(self):
    items = self.pop_mark()
    target = self._dict_target(-1)
    for i in range(0, len(items), 2):
      target[_key(items[i])] = items[i + 1]

  def load_dict(self):
    items = self.pop_mark()
    self.append({_key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

  def load_additems(self):
    items = self.pop_mark()
    target = self.stack[-1]
    if type(target) is not set:
      raise pickle.UnpicklingError(f'refused: adding items to a {type(target).__name__}')
    target.update(map(_key, items))

  def load_frozenset(self):
    self.append(frozenset(map(_key, self.pop_mark())))

  def load_append(self):
    value = self.stack.pop()
    self._list_target().append(value)

  def load_appends(self):
    items = self.pop_mark()
    self._list_target().extend(items)

  def _list_target(self):
    if type(self.stack[-1]) is not list:
      raise pickle.UnpicklingError(f'refused: appending to a {type(self.stack[-1]).__name__}')
    return self.stack[-1]

  def load_ext(self):  # the copyreg extension registry would bypass find_class through its cache
    raise pickle.UnpicklingError('refused: pickle extension codes')

  dispatch[pickle.BUILD[0]] = load_build
  dispatch[pickle.SETITEM[0]] = load_setitem
  dispatch[pickle.SETITEMS[0]] = load_setitems
  dispatch[pickle.DICT[0]] = load_dict
  dispatch[pickle.ADDITEMS[0]] = load_additems
  dispatch[pickle.FROZENSET[0]] = load_frozenset
  dispatch[pickle.APPEND[0]] = load_append
  dispatch[pickle.APPENDS[0]] = load_appends
  for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
    dispatch[_op[0]] = load_ext

  # Python objects cost far more than the opcodes that make them (one byte of EMPTY_SET is a 216-byte
  # set): the opcodes that create objects, memo entries or container items are charged what they
  # allocate, and together they may not exceed a multiple of the pickle's own size.
  def _charge_pickle(self, nbytes):
    self._pickle_bytes += nbytes
    if self._pickle_bytes > self._pickle_budget:
      raise pickle.UnpicklingError(f'refused: the pickle builds over {self._pickle_budget >> 20} MiB of '
                                   f'Python objects from {self._pickle_size} bytes')

  def _creates(handler):  # pylint: disable=no-self-argument
    def run(self):
      handler(self)  # pylint: disable=not-callable
      top = self.stack[-1]  # a tensor's data is charged as a view (_charge); here only its header
      self._charge_pickle(112 if isinstance(top, np.ndarray) else sys.getsizeof(top))
    return run

  def _adds(handler, marked):  # pylint: disable=no-self-argument
    def run(self):
      # After MARK, the stack holds just the items: a set or dict entry costs up to about 64 bytes.
      self._charge_pickle(64 * max(len(self.stack), 1) if marked else 64)
      handler(self)  # pylint: disable=not-callable
    return run

  for _op in (pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.LIST, pickle.DICT,
              pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.FROZENSET, pickle.REDUCE,
              pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.INST, pickle.OBJ):
    dispatch[_op[0]] = _creates(dispatch[_op[0]])
  for _op in (pickle.MARK, pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT, pickle.MEMOIZE, pickle.APPEND,
              pickle.SETITEM, pickle.BUILD):
    dispatch[_op[0]] = _adds(dispatch[_op[0]], marked=False)
  for _op in (pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS):
    dispatch[_op[0]] = _adds(dispatch[_op[0]], marked=True)
  del _op, _creates, _adds


def load_torch_zip(path) -> object:
  """Load a torch zip-format checkpoint (torch >= 1.6 ``torch.save``); tensors become arrays."""
  try:
    with zipfile.ZipFile(path) as zf:
      pkls = [n for n in zf.namelist() if n.count('/') == 1 and n.endswith('/data.pkl')]
      if len(pkls) != 1:
        raise _err(path, 'not a torch checkpoint (zip archive without one */data.pkl)')
      prefix = pkls[0][: -len('/data.pkl')]
      archive_size = zf.fp.seek(0, os.SEEK_END)
      byteorder = sys.byteorder  # what torch assumes when the record is absent
      if f'{prefix}/byteorder' in zf.namelist():
        info = zf.getinfo(f'{prefix}/byteorder')
        raw = _read_record(zf, info.filename, min(info.file_size, 16), archive_size)
        byteorder = raw.decode('ascii', 'replace').strip()
        if byteorder not in ('little', 'big'):
          raise _err(path, f'unknown byte order {byteorder[:20]!r}')
      info = zf.getinfo(pkls[0])
      if info.compress_type != zipfile.ZIP_STORED:
        raise _err(path, f'refused: record {pkls[0]!r} is compressed (method {info.compress_type}); '
                         'torch writes records uncompressed')
      if info.file_size != info.compress_size or info.file_size > archive_size:
        raise _err(path, f'record {pkls[0]!r} declares {info.file_size} bytes in a {archive_size}-byte file')
      with zf.open(info) as f:
        obj = _Unpickler(f, path, zf, prefix, byteorder, archive_size, info.file_size).load()
      _check_nesting(obj)
      return obj
  except CheckpointError:
    raise
  except (zipfile.BadZipFile, zlib.error) as e:
    raise _err(path, f'truncated or corrupt zip archive ({e})') from None
  except OSError as e:
    raise _err(path, f'cannot read file ({e.strerror or e})') from None
  except Exception as e:  # a malformed pickle can fail in many ways; all mean a bad file
    raise _err(path, f'corrupt checkpoint ({type(e).__name__}: {str(e)[:200]})') from None


def _safetensors_entries(path, header, data_size):
  """-> [(name, dtype, shape, begin, end)], checked as the format specifies: every entry's bytes
  match its shape, and the entries tile the data section exactly (no overlap, no hole), so the
  arrays together hold as many bytes as the file."""
  if not isinstance(header, dict):
    raise _err(path, 'corrupt safetensors header (not a JSON object)')
  entries = []
  for name, info in header.items():
    if name == '__metadata__':
      continue
    if not (isinstance(info, dict) and isinstance(info.get('shape'), list)
            and isinstance(info.get('data_offsets'), list) and len(info['data_offsets']) == 2):
      raise _err(path, f'corrupt safetensors header (bad entry {name[:80]!r})')
    if info.get('dtype') not in _ST_DTYPES:
      raise _err(path, f"unsupported safetensors dtype {_short.repr(info.get('dtype'))} for {name[:80]!r}")
    dtype, shape = np.dtype(_ST_DTYPES[info['dtype']]), info['shape']
    begin, end = info['data_offsets']
    if not all(type(v) is int and v >= 0 for v in (*shape, begin, end)) or len(shape) > 64 or (
        end - begin != math.prod(shape) * dtype.itemsize):
      raise _err(path, f'bad shape or data_offsets for {name[:80]!r}')
    entries.append((name, dtype, shape, begin, end))
  pos = 0
  for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
    if begin != pos:
      what = 'overlaps another entry' if begin < pos else 'leaves a gap before it'
      raise _err(path, f'refused: safetensors entry {name[:80]!r} at bytes {begin}..{end} {what} '
                       '(entries must be contiguous and non-overlapping)')
    pos = end
  if pos > data_size:
    raise _err(path, 'truncated safetensors file (data ends past end of file)')
  if pos != data_size:
    raise _err(path, f'refused: {data_size - pos} bytes after the last safetensors entry')
  return entries


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
      try:
        header = json.loads(f.read(n))
      except RecursionError:
        raise _err(path, 'corrupt safetensors header (JSON nested too deeply)') from None
      out = {}
      for name, dtype, shape, begin, end in _safetensors_entries(path, header, size - 8 - n):
        buf = bytearray(end - begin)  # a bytearray, so that the arrays come back writable
        f.seek(8 + n + begin)
        if f.readinto(buf) != len(buf):
          raise _err(path, f'truncated safetensors file (short read of {name[:80]!r})')
        out[name] = _from_bytes(buf, dtype, 'little').reshape(shape)
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
