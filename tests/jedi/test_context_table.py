"""Context table ties: per trial, per condition, and condition + per-trial offset."""
import pytest
import torch

from jedi_rnn.models.embeddings import ContextTable

CONDITIONS = torch.tensor([0, 1, 1, 2, 0, 2])


def test_condition_tie_shares_one_row_per_condition():
    table = ContextTable(len(CONDITIONS), 3, 4, tie="condition")
    emb = table(torch.arange(6), CONDITIONS)
    torch.testing.assert_close(emb[0], emb[4])
    torch.testing.assert_close(table.per_trial(CONDITIONS), emb)
    torch.testing.assert_close(table.condition_means(CONDITIONS), table.table.weight)


def test_hierarchical_tie_starts_at_the_condition_rows_and_keeps_per_trial_offsets():
    torch.manual_seed(0)
    table = ContextTable(len(CONDITIONS), 3, 4, tie="hierarchical")
    idx = torch.arange(6)
    torch.testing.assert_close(table(idx, CONDITIONS), table.table.weight[CONDITIONS])  # offsets start at 0
    with torch.no_grad():
        table.offsets.weight.copy_(torch.randn(6, 4))
    emb = table(idx, CONDITIONS)
    torch.testing.assert_close(emb, table.table.weight[CONDITIONS] + table.offsets.weight)
    torch.testing.assert_close(table.per_trial(CONDITIONS), emb)
    expected = torch.stack([emb[CONDITIONS == k].mean(0) for k in range(3)])
    torch.testing.assert_close(table.condition_means(CONDITIONS), expected)
    # a gradient through one trial reaches its condition row and only its own offset
    table(idx[:1], CONDITIONS[:1]).sum().backward()
    assert table.offsets.weight.grad[1:].abs().sum() == 0 and table.offsets.weight.grad[0].abs().sum() > 0
    assert table.table.weight.grad[0].abs().sum() > 0 and table.table.weight.grad[1:].abs().sum() == 0


def test_unknown_tie_names_the_key():
    with pytest.raises(ValueError, match="model.embedding_tie"):
        ContextTable(6, 3, 4, tie="session")


def test_segment_points_join_each_point_to_its_nearest_neighbours_once():
    from jedi_rnn.lit_module import segment_points

    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    out = segment_points(points, neighbours=1, fractions=(0.5,))
    # nearest pairs: 0-1, 1-0 (same pair), 2-1, 3-2 -> {0-1, 1-2, 2-3}
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.0], [2.0, 0.0], [6.5, 0.0]]))
    quarter = segment_points(points[:2], neighbours=3, fractions=(0.25, 0.75))
    torch.testing.assert_close(quarter, torch.tensor([[0.25, 0.0], [0.75, 0.0]]))
    assert segment_points(points[:1], neighbours=3).shape == (0, 2)
