"""Config strings: `--config=configs/mead.py:variant=B/16,preset=paper_code` passes 'variant=B/16,...' to
`get_config`, which reads it with `parse_arg`."""

import ml_collections


def parse_arg(arg, **defaults):
  """'k=v,k2=v2' -> ConfigDict of `defaults` updated with those values, each cast to its default's type."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or key not in defaults:
      raise ValueError(f'bad config argument {item!r}: expected key=value with key in {sorted(defaults)}')
    default = defaults[key]
    if isinstance(default, bool):
      value = value.strip().lower() in ('1', 'true', 'yes')
    out[key] = type(default)(value) if default is not None and not isinstance(default, bool) else value
  return out
