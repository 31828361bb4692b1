"""What every command line shares: absl flags parsed with one-line errors (`parse_flags`), and `exit_with`."""

import sys

from absl import flags


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
    exit_with(lines[0].rstrip(':') + (f': {lines[-1]}' if len(lines) > 1 else ''))
  except OSError as e:
    exit_with(f'--{config_flag}: {str(e).splitlines()[-1].strip()}')
  return rest


def exit_with(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)
