"""A validation split held out of the training folds by actor (`config.validation_share`), never from the test fold.

The paper's protocol has none (5 folds, final weights). The authors' code watched a validation loss for the
learning rate (reduce-on-plateau), early stopping and the best weights; here those watch this split, so nothing
chooses by the test fold. Whole actors are held out, as the folds are, so validation is subject-independent too:

    actors = pipeline.read_targets(name, pipeline.train_split(fold), data_dir, keys=('actor',))['actor']
    held_out = validation.choose_actors(actors, config.validation_share, config.seed, config.fold)
    train_source, val_source = validation.hold_out(source, actors, held_out)
"""

import numpy as np

FILENAME = 'validation.json'  # in the workdir: which actors a run held out, and how many clips each side has


def choose_actors(actors, share, seed, fold):
  """The sorted actors to hold out: share x the number of distinct `actors`, rounded, at least one. Drawn with
  (seed, fold): each test fold holds out others, and a rerun (or a resumed run) the same. ValueError (one line)
  for a share outside [0, 1) or one that leaves no actor to train on; [] for share 0."""
  if not 0 <= share < 1:
    raise ValueError(f'validation_share must be in [0, 1), got {share}')
  if share == 0:
    return []
  distinct = np.unique(np.asarray(actors))
  count = max(1, int(np.floor(share * len(distinct) + 0.5)))  # halves up
  if count >= len(distinct):
    raise ValueError(f'validation_share={share} holds out {count} of the {len(distinct)} training actors, leaving '
                     'none to train on')
  rng = np.random.default_rng([seed % 2**32, fold, 0x7A11])  # the tag keeps it apart from the epoch order's seeds
  return sorted(int(a) for a in rng.choice(distinct, count, replace=False))


class Subset:
  """The examples `indices` of a data source, as a data source: what pipeline.train_batches and eval_batches read
  (len, [i], dataset_info). Plain and picklable, so the loader's worker processes get it as they get the source."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]

  @property
  def dataset_info(self):
    return self.source.dataset_info


def hold_out(source, actors, held_out):
  """(training Subset, validation Subset) of `source`, whose examples' actors are `actors` (in source order)."""
  is_held_out = np.isin(actors, held_out)
  return Subset(source, np.flatnonzero(~is_held_out)), Subset(source, np.flatnonzero(is_held_out))


def describe(actors, held_out):
  """What a run records in FILENAME: the validation and training actors and their clip counts."""
  is_held_out = np.isin(actors, held_out)
  return {'validation_actors': [int(a) for a in held_out],
          'train_actors': sorted(int(a) for a in np.unique(np.asarray(actors)[~is_held_out])),
          'num_validation_clips': int(is_held_out.sum()), 'num_train_clips': int((~is_held_out).sum())}
