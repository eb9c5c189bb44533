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
    # a gradient through one trial reaches its condition row and only its own offset
    table(idx[:1], CONDITIONS[:1]).sum().backward()
    assert table.offsets.weight.grad[1:].abs().sum() == 0 and table.offsets.weight.grad[0].abs().sum() > 0
    assert table.table.weight.grad[0].abs().sum() > 0 and table.table.weight.grad[1:].abs().sum() == 0


def test_unknown_tie_names_the_key():
    with pytest.raises(ValueError, match="model.embedding_tie"):
        ContextTable(6, 3, 4, tie="session")
