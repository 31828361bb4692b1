"""The paper's reported results, to print beside ours: UAR and WAR in percent, exactly as printed.

Source: Xiang et al., "MTCAE-DFER: Multi-Task Cascaded Autoencoder for Dynamic Facial Expression Recognition".
Table I (ablation of the six structure strategies on RAVDESS, CREMA-D and MEAD) holds every number here; the
MTCAE-DFER rows of Tables II (RAVDESS), III (CREMA-D) and IV (MEAD) repeat Table I's `cascaded` rows, so they are not
written twice: `paper_result(dataset, 'cascaded')` names both tables. The paper evaluates by 5-fold
subject-independent cross-validation (Sec. IV-A).

    paper_result('ravdess_dfer', 'cascaded')  # {'uar': 82.73, 'war': 83.69, 'source': 'Table I; Table II'}
"""

# dataset -> (UAR, WAR) per strategy, in Table I's row order (the six structure strategies of Sec. IV-B.3: STL;
# non-fully shared MTL with MLP or ViT decoders; fully shared MTL with MLP or ViT decoders; cascaded ViT decoders).
TABLE_I = {
    'ravdess_dfer': {
        'stl': (72.36, 74.44),
        'nonshared_mlp': (75.56, 77.28),
        'nonshared_vit': (81.11, 82.17),
        'shared_mlp': (75.95, 76.84),
        'shared_vit': (80.02, 81.43),
        'cascaded': (82.73, 83.69),
    },
    'crema_d_dfer': {
        'stl': (75.87, 76.21),
        'nonshared_mlp': (77.23, 79.89),
        'nonshared_vit': (83.40, 83.67),
        'shared_mlp': (76.25, 77.55),
        'shared_vit': (81.64, 82.38),
        'cascaded': (84.71, 85.03),
    },
    'mead_dfer': {
        'stl': (77.83, 79.61),
        'nonshared_mlp': (81.40, 82.14),
        'nonshared_vit': (84.75, 86.57),
        'shared_mlp': (79.12, 80.93),
        'shared_vit': (84.03, 84.74),
        'cascaded': (87.51, 88.44),
    },
}

STRATEGIES = tuple(TABLE_I['ravdess_dfer'])

# The comparison table whose "MTCAE-DFER (ours)" row repeats Table I's cascaded row for the dataset.
COMPARISON_TABLE = {'ravdess_dfer': 'Table II', 'crema_d_dfer': 'Table III', 'mead_dfer': 'Table IV'}


def paper_result(dataset, strategy):
  """{'uar', 'war', 'source'} the paper reports for `dataset` and `strategy`, or None where it reports none."""
  row = TABLE_I.get(dataset, {}).get(strategy)
  if row is None:
    return None
  source = 'Table I' + (f'; {COMPARISON_TABLE[dataset]}' if strategy == 'cascaded' else '')
  return dict(uar=row[0], war=row[1], source=source)


def describe(dataset):
  """The paper's numbers for `dataset` as docstring lines: its config files append them to their docstrings."""
  rows = [f'    {s:<14} UAR {uar:5.2f}  WAR {war:5.2f}' for s, (uar, war) in TABLE_I[dataset].items()]
  return (f'\nThe paper\'s results (%, 5-fold cross-validation; Table I, and {COMPARISON_TABLE[dataset]} for '
          '`cascaded`), which `--mode=cv` prints beneath ours:\n\n' + '\n'.join(rows) + '\n')
