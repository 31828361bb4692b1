"""Subject-independent k-fold cross-validation: every actor in exactly one fold, folds balanced by clip count."""

NUM_FOLDS = 5


class EmptyFold(ValueError):
  """A fold that would have no clip (too few actors, or all of a fold's clips unusable); a one-line message."""


def split_names(num_folds=NUM_FOLDS):
  return [f'fold{k}' for k in range(num_folds)]


def assign_folds(clips_per_actor, num_folds=NUM_FOLDS):
  """{actor: fold}. Deterministic: actors by clip count (most first, then id) each go to the emptiest fold.

  The greedy "largest first" rule keeps the folds within one actor's clip count of each other.
  """
  totals = [0] * num_folds
  fold_of = {}
  for actor, count in sorted(clips_per_actor.items(), key=lambda kv: (-kv[1], kv[0])):
    k = min(range(num_folds), key=lambda f: (totals[f], f))
    fold_of[actor] = k
    totals[k] += count
  return fold_of


def empty_folds(fold_of, num_folds=NUM_FOLDS):
  """The split names of the folds that no actor of {actor: fold} is in."""
  used = set(fold_of.values())
  return [name for k, name in enumerate(split_names(num_folds)) if k not in used]


def train_split(fold, num_folds=NUM_FOLDS):
  """The TFDS split string for training when `fold` is held out: all other folds."""
  return '+'.join(f'fold{k}' for k in range(num_folds) if k != fold)
