"""The framework-facing analysis callables on a tiny JEDI student: numbers, figures, arrays, and
their agreement with independent computations on the module."""
import numpy as np
import torch
from scipy.stats import spearmanr

from jedi_rnn.analysis.fixed_points import analyze_student_fixed_points
from jedi_rnn.analysis.lyapunov import analyze_lyapunov
from jedi_rnn.analysis.spectra import analyze_spectra


def _mean_condition_weights(module, dm):
    """Independent: per-condition mean of the training embeddings -> hypernetwork -> dense W."""
    train = dm.train_set
    emb = module.embeddings.table.weight.detach()
    ids = sorted(set(train.conditions.tolist()))
    c = torch.stack([emb[train.conditions == k].mean(0) for k in ids])
    with torch.no_grad():
        w = module.hypernet(c)
    return ids, w


def test_fixed_points_entry(tiny_student, tmp_path):
    module, dm = tiny_student
    out = tmp_path / "run" / "figures"
    nums = analyze_student_fixed_points(module, dm, out, n_inits=32, n_trials=4, max_iters=1500)
    assert {"fixed_points/n_fixed_mean", "fixed_points/n_stable_mean", "fixed_points/frac_converged"} <= set(nums)
    assert (out / "fixed_points.png").stat().st_size > 0 and (out / "fixed_point_spectra.png").exists()
    arrays = np.load(tmp_path / "run" / "analysis" / "fixed_points.npz")
    ids, w = _mean_condition_weights(module, dm)
    assert arrays["condition_ids"].tolist() == ids
    # every reported fixed point is one of the student's own noise-free step (RateRNN.step)
    n_checked = 0
    for c in range(len(ids)):
        keep = arrays["q"][c] <= float(arrays["fixed_q"])
        x = torch.tensor(arrays["xstar"][c][keep], dtype=torch.float32)
        wc = w._replace(U=w.U[c:c + 1].expand(len(x), -1, -1), V=w.V[c:c + 1].expand(len(x), -1, -1))
        step = module.rnn.step(wc, x)
        torch.testing.assert_close(step, x, atol=1e-4, rtol=0)
        n_checked += len(x)
    assert n_checked >= len(ids)  # at least the origin in every condition
    assert nums["fixed_points/n_fixed_mean"] == float(np.mean(arrays["n_fixed"]))


def test_spectra_entry(tiny_student, tmp_path):
    module, dm = tiny_student
    out = tmp_path / "run" / "figures"
    nums = analyze_spectra(module, dm, out)
    assert (out / "spectra.png").exists() and (out / "spectra_imag_vs_value.png").exists()
    ids, w = _mean_condition_weights(module, dm)
    dense = w.dense().double().numpy()
    alpha = module.rnn.alpha
    radius_A = [np.abs(np.linalg.eigvals((1 - alpha) * np.eye(len(d)) + alpha * d)).max() for d in dense]
    max_imag_J = [np.abs(np.linalg.eigvals(d).imag).max() for d in dense]
    np.testing.assert_allclose(nums["spectra/radius_mean"], np.mean(radius_A), rtol=1e-6)
    np.testing.assert_allclose(nums["spectra/J_max_imag_mean"], np.mean(max_imag_J), rtol=1e-6)
    freq = dm.train_set.condition_values[ids].numpy()
    np.testing.assert_allclose(nums["spectra/spearman_freq_imag"], spearmanr(freq, max_imag_J)[0], atol=1e-9)
    arrays = np.load(tmp_path / "run" / "analysis" / "spectra.npz")
    assert arrays["eig_J"].shape == (len(ids), dense.shape[1])


def test_lyapunov_entry(tiny_student, tmp_path):
    module, dm = tiny_student
    out = tmp_path / "run" / "figures"
    nums = analyze_lyapunov(module, dm, out, n_exponents=4, burn_in=100, n_steps=300)
    assert (out / "lyapunov.png").exists()
    arrays = np.load(tmp_path / "run" / "analysis" / "lyapunov.npz")
    lam = arrays["exponents"]
    assert lam.shape == (len(arrays["condition_ids"]), 4)
    assert (np.diff(lam, axis=1) <= 0).all()
    assert nums["lyapunov/lambda_max"] == lam[:, 0].max()
    # bound: ||DF(x)|| <= (1 - a) + a ||W||_2 everywhere, so lambda_1 <= log of it / dt
    _, w = _mean_condition_weights(module, dm)
    alpha, dt = module.rnn.alpha, module.rnn.dt
    bound = np.log((1 - alpha) + alpha * np.linalg.norm(w.dense().double().numpy(), ord=2, axis=(1, 2))) / dt
    assert (lam[:, 0] <= bound + 1e-9).all()


def test_spectra_entry_with_heldout_conditions(tiny_student_heldout, tmp_path):
    module, dm = tiny_student_heldout
    nums = analyze_spectra(module, dm, tmp_path / "run" / "figures")
    held = module.inferred["heldout_cond"]
    assert torch.unique(held.conditions).tolist() == [3]  # 4 Hz
    with torch.no_grad():
        w_held = module.hypernet(held.embeddings.mean(0, keepdim=True)).dense().double().numpy()[0]
    imag_held = np.abs(np.linalg.eigvals(w_held).imag).max()
    np.testing.assert_allclose(nums["spectra/heldout_J_max_imag_mean"], imag_held, rtol=1e-6)
    ids, w = _mean_condition_weights(module, dm)
    assert ids == [0, 1, 2]
    imag_train = [np.abs(np.linalg.eigvals(d).imag).max() for d in w.dense().double().numpy()]
    freq = dm.full_set.condition_values.numpy()
    rho_all = spearmanr(freq[[0, 1, 2, 3]], imag_train + [imag_held])[0]
    np.testing.assert_allclose(nums["spectra/spearman_freq_imag_all"], rho_all, atol=1e-9)
    arrays = np.load(tmp_path / "run" / "analysis" / "spectra.npz")
    assert arrays["heldout_condition_names"].tolist() == ["4Hz"]
