"""Config strings: `--config=configs/mead.py:variant=B/16,preset=paper_code` passes 'variant=B/16,...' to
`get_config`, which reads it with `parse_arg`; `parse_flags` reads the command line of the commands that take one."""

import sys

from absl import flags
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


def parse_flags(argv, flag_values=None, config_flag='config'):
  """absl's flag parsing (for `app.run(main, flags_parser=...)`) with a bad flag, or a config file that does not
  load or rejects its argument, reported as one line on stderr and exit status 2: absl would print the config
  file's traceback, and ml_collections leaves a missing file to fail at the config's first use."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  try:
    rest = flag_values(argv)
    config = flag_values[config_flag].value
    if config is not None:
      config.keys()  # raises the deferred load error, if any
  except flags.Error as e:  # the first line names the flag; a config file's own error is the last line
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    _exit_with(lines[0].rstrip(':') + (f': {lines[-1]}' if len(lines) > 1 else ''))
  except OSError as e:
    _exit_with(f'--{config_flag}: {str(e).splitlines()[-1].strip()}')
  return rest


def _exit_with(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)
