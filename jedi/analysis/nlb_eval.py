"""Neural Latents Benchmark scores of a trained JEDI model on reach data (post-hoc analysis).

Test trials get fresh embeddings fitted on the held-in neurons only (the module's
``infer.split=neurons``, whose held-out fraction must select exactly the data's held-out columns);
training trials use their learned embeddings. ``NLBEvaluator`` then gives co-bps (held-out
neurons), velocity R^2 (decoder fitted on the training trials' predicted rates), PSTH R^2, and
fp-bps when the data carry ``forward_spikes`` (the student is unrolled past the trial window).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from jedi_rnn.analysis.plotting import plt, save_figure
from jedi_rnn.data.trials import TrialSet, iter_batches
from jedi_rnn.metrics.nlb import NLBEvaluator

log = logging.getLogger(__name__)


def _skip_reason(module, trials: TrialSet) -> Optional[str]:
    """Why NLB scores do not apply to this run (None when they do)."""
    if int(trials.meta.get("n_heldout", 0)) == 0:
        return "the data have no held-out neurons (data.source.n_heldout)"
    if trials.meta.get("output", "counts") != "counts":
        return "the data are scaled rates (data.source.output=rates), not spike counts"
    if getattr(module, "infer_cfg", {}).get("split") != "neurons":
        return "model.infer.split is not 'neurons' (embeddings must be fitted on held-in neurons only)"
    return None


def _check_split(module, trials: TrialSet) -> None:
    cfg = module.infer_cfg
    K, n_out = trials.data.shape[2], int(trials.meta["n_heldout"])
    cut = K - int(round(cfg["heldout_neurons"] * K))
    if cut != K - n_out:
        raise ValueError(f"analyze_nlb: model.infer.heldout_neurons={cfg['heldout_neurons']} holds out {K - cut} of "
                         f"{K} neurons but the data hold out the last {n_out}; set it to {n_out / K:.4f}")


def _plot(ev: NLBEvaluator, scores: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    keys = sorted(scores)
    axes[0].bar(range(len(keys)), [scores[k] for k in keys], color="tab:gray")
    axes[0].set_xticks(range(len(keys)), keys)
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_title("NLB scores (test trials)")
    m = ev.psth_r2
    if m is not None and bool((m.trial_count > 0).any()):
        seen = torch.nonzero(m.trial_count > 0).flatten()[:4]
        t = np.arange(m.psth.shape[1])
        for i, c in enumerate(seen.tolist()):
            color = plt.cm.tab10(i)
            axes[1].plot(t, m.psth[c, :, -1].cpu().numpy(), color=color, lw=1.5)
            axes[1].plot(t, (m.pred_sum[c, :, -1] / m.trial_count[c]).cpu().numpy(), color=color, ls="--")
        axes[1].set(xlabel="bin", ylabel="expected counts / bin", title="PSTH, last held-out neuron (true —, model --)")
    return save_figure(fig, path)


def analyze_nlb(module, datamodule, out_dir: Path, steps: Optional[int] = None, batch_size: int = 64) -> dict:
    """co-bps / vel R^2 / PSTH R^2 / fp-bps on the test trials; returns ``nlb/<score>``, saves ``nlb.png``.

    Returns {} (with a warning) where the scores do not apply: no held-out neurons, the rates (MSE)
    route, or an inference split other than ``neurons``.
    """
    reason = _skip_reason(module, datamodule.full_set)
    if reason is not None:
        log.warning("analyze_nlb: skipped, %s", reason)
        return {}
    _check_split(module, datamodule.full_set)
    ev = NLBEvaluator.from_trialset(datamodule.full_set)
    device = next(module.parameters()).device
    steps = steps if steps is not None else module.infer_cfg["steps"]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for batch in iter_batches(datamodule.train_set, batch_size, device):
                c = module.embeddings(batch.index, batch.condition)
                ev.update_train(module.predict(c, batch), batch)
        for batch in iter_batches(datamodule.test_set, batch_size, device):
            c = module.infer_embeddings(batch, steps)
            with torch.no_grad():
                ev.update(module.predict(c, batch), batch)
                if "forward_spikes" in batch.extras:
                    T, n_fwd = batch.data.shape[1], batch.extras["forward_spikes"].shape[1]
                    pad = batch.data.new_full((len(batch.index), n_fwd, batch.data.shape[2]), float("nan"))
                    longer = batch._replace(data=torch.cat([batch.data, pad], 1))  # (B, T + T_fwd, K)
                    ev.update_forward(module.predict(c, longer)[:, T:], batch)
    finally:
        module.train(was_training)
    scores = ev.compute()
    _plot(ev, scores, Path(out_dir) / "nlb.png")
    return {f"nlb/{k}": v for k, v in scores.items()}
