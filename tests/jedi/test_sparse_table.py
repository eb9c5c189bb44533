"""A row-sparse context table on SparseAdam (model.sparse_embeddings): the update of a table row is
lazy Adam's, rows outside the batch stay as they were, and the one optimiser Lightning sees carries
every group through schedulers, clipping and checkpoints."""
import copy as copy_module

import pytest
import torch
from torch import nn

from experiments.glue.schedules import CosineDecayLR
from jedi_rnn.optim import TableOptimizer, build_optimizer, clip_gradients


class _Toy(nn.Module):
    """A table of 10 rows of 3 and a linear network reading a row."""

    def __init__(self, sparse: bool):
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(10, 3, sparse=sparse)
        self.net = nn.Linear(3, 2)

    def groups(self) -> list[dict]:
        return [{"params": list(self.net.parameters()), "lr": 1e-2, "weight_decay": 0.0},
                {"params": list(self.table.parameters()), "lr": 1e-1, "weight_decay": 0.0}]

    def loss(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(self.table(rows)).square().sum()


def _step(model: _Toy, opt, rows) -> None:
    opt.zero_grad()
    model.loss(torch.tensor(rows)).backward()
    opt.step()


def _optimizer(model: _Toy, sparse: bool):
    return build_optimizer(lambda groups: torch.optim.Adam(groups), model.groups(), sparse_table=sparse)


def test_first_step_equals_dense_adam_and_rows_outside_later_batches_stay_put():
    dense, sparse = _Toy(sparse=False), _Toy(sparse=True)
    opt_d, opt_s = _optimizer(dense, False), _optimizer(sparse, True)
    assert isinstance(opt_s, TableOptimizer) and not isinstance(opt_d, TableOptimizer)
    _step(dense, opt_d, [0, 1, 2])
    _step(sparse, opt_s, [0, 1, 2])
    # Adam's first step is -lr * g / (|g| + eps) in both; a row with no gradient has no moment yet
    for a, b in zip(dense.parameters(), sparse.parameters()):
        torch.testing.assert_close(a, b)
    before = sparse.table.weight.detach().clone()
    _step(dense, opt_d, [5, 6])
    _step(sparse, opt_s, [5, 6])
    # lazy Adam: rows 0-2 (not in the batch) keep their values; dense Adam moves them by momentum
    torch.testing.assert_close(sparse.table.weight[:5], before[:5], rtol=0, atol=0)
    assert (dense.table.weight[:3] - before[:3]).abs().min() > 0
    assert (sparse.table.weight[5:7] - before[5:7]).abs().min() > 0


def test_state_dict_round_trip_continues_exactly():
    model = _Toy(sparse=True)
    opt = _optimizer(model, True)
    for rows in ([0, 1], [2, 3], [1, 4]):
        _step(model, opt, rows)
    copy = _Toy(sparse=True)
    copy.load_state_dict(model.state_dict())
    opt_copy = _optimizer(copy, True)
    opt_copy.load_state_dict(copy_module.deepcopy(opt.state_dict()))  # as from a checkpoint file
    for m, o in ((model, opt), (copy, opt_copy)):
        _step(m, o, [1, 2, 3])
    for a, b in zip(model.parameters(), copy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the inner optimisers read the loaded groups and state, not their own stale copies
    assert opt_copy.table.param_groups[0] is opt_copy.param_groups[-1]
    assert opt_copy.network.state is opt_copy.state


def test_a_schedule_sets_every_group_and_clipping_scales_the_table_gradient_as_torch_does():
    model = _Toy(sparse=True)
    opt = _optimizer(model, True)
    sched = CosineDecayLR(opt, total_steps=2, final_fraction=0.5)
    _step(model, opt, [0, 1])
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-2 * 0.75, 1e-1 * 0.75])
    assert opt.table.param_groups[0]["lr"] == pytest.approx(0.075)
    opt.zero_grad()
    model.loss(torch.tensor([3, 4])).backward()
    dense = torch.cat([(p.grad.to_dense() if p.grad.is_sparse else p.grad).flatten() for p in model.parameters()])
    norm = torch.linalg.vector_norm(dense)
    clip_gradients(model.parameters(), clip_val=0.5 * norm.item())  # torch's rule on the dense gradient:
    clipped = torch.cat([(p.grad.to_dense() if p.grad.is_sparse else p.grad).flatten() for p in model.parameters()])
    torch.testing.assert_close(clipped, dense * 0.5 * norm / (norm + 1e-6))
    assert model.table.weight.grad.is_sparse


def test_weight_decay_on_a_sparse_table_is_refused():
    model = _Toy(sparse=True)
    groups = model.groups()
    groups[-1]["weight_decay"] = 0.1
    with pytest.raises(ValueError, match="model.sparse_embeddings"):
        build_optimizer(torch.optim.Adam, groups, sparse_table=True)
