"""What every command line shares: `run` (absl flags defined on a fresh FlagValues per call, parsed with one-line
errors by `parse_flags`), path flags that expand `~` (`DEFINE_path`), and the one-line `error: ...` (`Error`).

A command module defines its flags in a function and runs as

    def main(argv=None):
      return cli.run(__doc__, define_flags, command, argv)

so importing it defines nothing (it may be imported, or reloaded, by other code), `main()` is the console script,
and `main([...])` runs it in-process; each returns the exit status.
"""

import os
import sys

from absl import flags, logging

flags.disclaim_key_flags()  # flags DEFINE_path makes belong to the command that calls it

HELP = ('-h', '--help', '--helpshort', '--helpfull')


class Error(Exception):
  """A wrong command line or input: `run` prints `error: <message>` as one line and returns exit status 2."""


def expand(path):
  """`~` expanded: the shell leaves it alone after `=`, as in `--manual_dir=~/data/ravdess`."""
  return None if path is None else os.path.expanduser(path)


class _PathParser(flags.ArgumentParser):
  syntactic_help = 'a path; ~ is expanded'

  def parse(self, argument):
    return expand(str(argument))

  def flag_type(self):
    return 'string'


def DEFINE_path(name, default, help, flag_values, required=False):  # pylint: disable=invalid-name,redefined-builtin
  """A string flag holding a path, `~` expanded."""
  flags.DEFINE(_PathParser(), name, default, help, flag_values, flags.ArgumentSerializer())
  if required:
    flags.mark_flag_as_required(name, flag_values=flag_values)


def DEFINE_multi_path(name, default, help, flag_values):  # pylint: disable=invalid-name,redefined-builtin
  """A repeatable path flag (a list), `~` expanded."""
  flags.DEFINE_multi(_PathParser(), flags.ArgumentSerializer(), name, default, help, flag_values)


def DEFINE_allow_cpu(flag_values):  # pylint: disable=invalid-name
  """`--allow_cpu`, for the commands that call `accelerator.check(fv.allow_cpu)` first."""
  flags.DEFINE_bool('allow_cpu', False, 'Run on the CPU even where the machine has a GPU or TPU that JAX does not '
                    'use (else that is an error: a mismatched JAX install).', flag_values=flag_values)


def _expand_config(argv, config_flag):
  # ml_collections reads the config file from the flag's text: expand a leading `~` before it sees it.
  prefix = f'--{config_flag}=~'
  return [f'--{config_flag}={expand(a[len(prefix) - 1:])}' if a.startswith(prefix) else a for a in argv]


def parse_flags(argv, flag_values=None, config_flag='config'):
  """absl's flag parsing with a bad flag, or a config file that does not load or rejects its argument, reported
  as one line on stderr and exit status 2: absl would print the config file's traceback, and ml_collections
  leaves a missing file to fail at the config's first use. Returns the arguments left (argv[0] first)."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  try:
    rest = flag_values(_expand_config(argv, config_flag))
    config = flag_values[config_flag].value if config_flag in flag_values else None
    if config is not None:
      config.keys()  # raises the deferred load error, if any
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if all(line.startswith('flag --') for line in lines):  # one line per flag, e.g. several required ones missing
      exit_with('; '.join(lines))
    # Else the first line names the flag and a config file's own error is the last line.
    exit_with(lines[0].rstrip(':') + (f': {lines[-1]}' if len(lines) > 1 else ''))
  except OSError as e:
    exit_with(f'--{config_flag}: {str(e).splitlines()[-1].strip()}')
  return rest


def error(message):
  """Prints `error: <message>` as one line on stderr; returns exit status 2."""
  text = ' '.join(line.strip() for line in str(message).splitlines() if line.strip())
  print(f'error: {text}', file=sys.stderr)
  return 2


def exit_with(message):
  sys.exit(error(message))


def run(doc, define_flags, command, argv=None, *, config=None, positional=()):
  """Runs one command line; returns its exit status.

  `define_flags(flag_values)` defines the flags on a fresh FlagValues; `config`, a help text, adds ml_collections'
  `--config` (with its `--config.x=...` overrides) first. `argv` (default: sys.argv[1:]) is parsed, `-h`/`--help`
  prints `doc` and the flags, and `command(flag_values, args)` runs with the arguments that are not flags, as many
  as `positional` names; what it returns (None: 0) is the status. A bad flag, a wrong number of arguments or a
  `cli.Error` raised by the command is one line `error: ...` and status 2.
  """
  args = sys.argv[1:] if argv is None else list(argv)
  full = _expand_config([sys.argv[0] if sys.argv and sys.argv[0] else 'prog', *args], 'config')
  flag_values = flags.FlagValues()
  if config:
    from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
    config_flags.DEFINE_config_file('config', None, config, flag_values=flag_values, sys_argv=full)
  define_flags(flag_values)
  if any(a in HELP for a in args):
    print(doc.strip() + '\n\nflags:\n' + flag_values.get_help(include_special_flags=False))
    return 0
  try:
    rest = parse_flags(full, flag_values)[1:]
  except SystemExit as e:
    return e.code
  if not flags.FLAGS.is_parsed():  # absl logging warns about logging before flag parsing otherwise
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()  # as absl's app.run
  if len(rest) != len(positional):
    wanted = ' '.join(n.upper() for n in positional) or 'no arguments'
    return error(f'expected {wanted} besides the flags, got {" ".join(rest) or "none"}')
  try:
    status = command(flag_values, rest)
  except Error as e:
    return error(e)
  return 0 if status is None else status
