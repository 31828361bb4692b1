"""The paper's numbers in mtcae_jax.configs.paper_results match Table I of the paper, typed here again from the
paper's text (the table's lines as printed, tab-separated), and unknown keys give None."""

import pytest

from mtcae_jax.configs import paper_results

# Table I as printed: Dataset, MTL, Type, Decoder, UAR, WAR; the dataset cell only on its first row.
TABLE_I_TEXT = '''\
RAVDESS [23]\t×\t-\t-\t72.36\t74.44
\t✓\tNon-Fully Shared\tMLP\t75.56\t77.28
\t✓\tNon-Fully Shared\tViT Decoder\t81.11\t82.17
\t✓\tFully Shared\tMLP\t75.95\t76.84
\t✓\tFully Shared\tViT Decoder\t80.02\t81.43
\t✓\tCascaded\tViT Decoder\t82.73\t83.69
CREMA-D [24]\t×\t-\t-\t75.87\t76.21
\t✓\tNon-Fully Shared\tMLP\t77.23\t79.89
\t✓\tNon-Fully Shared\tViT Decoder\t83.40\t83.67
\t✓\tFully Shared\tMLP\t76.25\t77.55
\t✓\tFully Shared\tViT Decoder\t81.64\t82.38
\t✓\tCascaded\tViT Decoder\t84.71\t85.03
MEAD [25]\t×\t-\t-\t77.83\t79.61
\t✓\tNon-Fully Shared\tMLP\t81.40\t82.14
\t✓\tNon-Fully Shared\tViT Decoder\t84.75\t86.57
\t✓\tFully Shared\tMLP\t79.12\t80.93
\t✓\tFully Shared\tViT Decoder\t84.03\t84.74
\t✓\tCascaded\tViT Decoder\t87.51\t88.44
'''
DATASETS = {'RAVDESS': 'ravdess_dfer', 'CREMA-D': 'crema_d_dfer', 'MEAD': 'mead_dfer'}
STRATEGIES = {('-', '-'): 'stl', ('Non-Fully Shared', 'MLP'): 'nonshared_mlp',
              ('Non-Fully Shared', 'ViT Decoder'): 'nonshared_vit', ('Fully Shared', 'MLP'): 'shared_mlp',
              ('Fully Shared', 'ViT Decoder'): 'shared_vit', ('Cascaded', 'ViT Decoder'): 'cascaded'}
# The "MTCAE-DFER (ours)" rows of Tables II-IV: UAR, WAR.
OURS_ROWS = {'ravdess_dfer': ('Table II', 82.73, 83.69), 'crema_d_dfer': ('Table III', 84.71, 85.03),
             'mead_dfer': ('Table IV', 87.51, 88.44)}


def parse_table_i():
  rows, dataset = {}, None
  for line in TABLE_I_TEXT.splitlines():
    name, _, kind, decoder, uar, war = line.split('\t')
    dataset = DATASETS[name.split(' [')[0]] if name else dataset
    rows[dataset, STRATEGIES[kind, decoder]] = (float(uar), float(war))
  return rows


def test_every_table_i_number_matches_the_paper_text():
  rows = parse_table_i()
  assert len(rows) == 18
  for (dataset, strategy), (uar, war) in rows.items():
    got = paper_results.paper_result(dataset, strategy)
    assert (got['uar'], got['war']) == (uar, war), (dataset, strategy)
    assert got['source'].startswith('Table I')


@pytest.mark.parametrize('dataset', sorted(OURS_ROWS))
def test_cascaded_is_the_comparison_tables_row(dataset):
  table, uar, war = OURS_ROWS[dataset]
  assert paper_results.paper_result(dataset, 'cascaded') == dict(uar=uar, war=war, source=f'Table I; {table}')


def test_a_few_numbers_typed_by_hand():
  assert paper_results.paper_result('ravdess_dfer', 'stl') == dict(uar=72.36, war=74.44, source='Table I')
  assert paper_results.paper_result('crema_d_dfer', 'nonshared_vit')['uar'] == 83.40
  assert paper_results.paper_result('mead_dfer', 'shared_mlp')['war'] == 80.93


@pytest.mark.parametrize('dataset,strategy', [('ravdess', 'cascaded'), ('ravdess_dfer', 'recursive'),
                                              ('demo', 'stl'), ('', ''), (None, None)])
def test_unknown_keys_give_none(dataset, strategy):
  assert paper_results.paper_result(dataset, strategy) is None


def test_strategies_are_the_configs():
  assert set(paper_results.STRATEGIES) == {s for d in paper_results.TABLE_I.values() for s in d}
