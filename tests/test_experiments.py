"""The paper-reproduction experiments (experiments/*.py) run in --quick mode and
their measured numbers satisfy identities the papers state exactly.

Each test runs one script's smoke configuration into a temporary folder
(a few seconds of simulation, most of the time is compilation), checks the
figures and the summary are written, and checks measured quantities against
closed forms from stedyn's theory helpers -- not against the scripts' own
arithmetic.
"""

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd

EXP = pathlib.Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXP))


def _run(name, tmp_path):
    mod = __import__(name)
    out = tmp_path / name
    res = mod.main(["--quick", "--out", str(out)])
    for fig in res["figures"].values():
        p = pathlib.Path(fig)
        assert p.parent == out and p.suffix == ".png" and p.stat().st_size > 5000, fig
    summary = (out / "summary.md").read_text()
    assert "## Measured" in summary and "## Compared with the paper" in summary
    assert "nan" not in summary.lower().replace("not_converged", "")
    return res


@pytest.fixture(scope="module")
def proper(tmp_path_factory):
    return _run("proper_ste_sec3", tmp_path_factory.mktemp("exp"))


@pytest.fixture(scope="module")
def yin(tmp_path_factory):
    return _run("yin_theorem1", tmp_path_factory.mktemp("exp"))


@pytest.fixture(scope="module")
def bcgd(tmp_path_factory):
    return _run("bcgd_remark1", tmp_path_factory.mktemp("exp"))


def test_proper_ste_crelu_picks_w0(proper):
    """Proper-STE eq. 30-31: at the global minimum the clipped-ReLU STE sits at |w| = w0(r, sigma)."""
    d = proper["runs_data"]
    M = d["meas"]["crelu"]
    glob = M["outcome"] == "global_min"
    assert glob.sum() >= 5
    v_all = np.asarray(d["result"]["crelu"].v)
    for k in np.where(glob)[0]:
        w0 = float(sd.crelu_w0(float(d["r"][k]), float(d["sigma"][k])))
        assert abs(M["w_norm"][k] / w0 - 1) < 1e-6, (k, M["w_norm"][k], w0)
        assert float(sd.crelu_lambda(M["w_norm"][k], float(d["r"][k]), float(d["sigma"][k]))) == pytest.approx(2, abs=1e-6)
        T = sd.Teacher(jnp.asarray(d["vs"][k]), jnp.asarray(d["ws"][k]), "relu")
        v0, _ = sd.global_min(T, float(d["sigma"][k]))
        assert np.linalg.norm(v_all[k] - np.asarray(v0)) < 1e-6 * np.linalg.norm(np.asarray(v0))
        assert M["angle"][k] < 1e-6


def test_proper_ste_identity_never_stationary(proper):
    """Proper-STE eq. 25: the identity STE's expected coarse gradient has no zero (m > 1)."""
    o = proper["runs_data"]["meas"]["identity"]["outcome"]
    assert not np.any(np.isin(o, ("global_min", "spurious_min", "saddle")))


def test_yin_relu_descent_while_w_bounded_below(yin):
    """Yin Theorem 1: at small eta the ReLU-STE loss decreases at every step while |w^t| >= c_w."""
    d = yin["runs_data"]
    mono = d["mono"]["relu"]
    KJ = yin["teachers"] * yin["inits"]
    small = slice(0, KJ)  # the smallest eta comes first
    kept = mono["min_w"][small] >= 0.1
    assert kept.sum() >= 3
    assert np.all(mono["n_inc"][small][kept] == 0)
    assert np.all(mono["max_inc"][small][kept] <= 1e-12)


def test_yin_relu_stays_at_spurious_minimizer_identity_leaves(yin):
    """Yin Lemma 6 / Lemma 7 at (v_pi, -w*)."""
    d = yin["runs_data"]
    K = yin["teachers"]
    R = d["res"]["relu"]
    sl = slice(d["nA"], d["nA"] + K)  # exact starts, teacher order
    assert np.all(np.asarray(R.outcome)[sl] == "spurious_min")
    assert np.max(math.pi - np.asarray(R.trajectory["angle"])[sl]) < 1e-12
    v_pi = np.asarray(jax.vmap(lambda a, b: sd.spurious_min(sd.Teacher(a, b, "binary"))[0])(
        jnp.asarray(d["vs"]), jnp.asarray(d["ws"])))
    assert np.max(np.abs(np.asarray(R.v)[sl] - v_pi)) < 1e-12
    # identity STE: Lemma 7's gradient norm at the spurious minimizer, and it does not stay
    m = d["vs"].shape[1]
    lemma7 = 2 * (m - 1) / (math.sqrt(2 * math.pi) * (m + 1) ** 2) * d["vs"].sum(axis=1) ** 2
    np.testing.assert_allclose(yin["identity_grad_at_spurious"], lemma7, rtol=1e-10)
    assert not np.any(np.asarray(d["res"]["identity"].outcome)[:K] == "spurious_min")


def test_bcgd_normalized_iterates_and_remark1(bcgd):
    """BCGD eq. 20 keeps |w| = 1; its global minimizer is (v*, w*); Remark 1's draws reach it."""
    d = bcgd["runs_data"]
    for (rule, _), M in d["meas"].items():
        glob = M["outcome"] == "global_min"
        assert glob.any()
        assert np.max(M["v_err"][glob]) < 1e-6 and np.max(M["angle"][glob]) < 1e-6
        if rule == "normalized":
            np.testing.assert_allclose(M["w_norm"], 1.0, rtol=1e-12)
    assert bcgd["remark1_n"] >= 1
    assert bcgd["remark1_frac"] == 1.0


def test_proper_ste_fig1_quick(tmp_path):
    """Proper-STE Fig. 1 setup, quick: both methods run, agree at the start
    within the Monte-Carlo standard error, and exact population-gradient
    descent (eta = 0.01 on a smooth loss) decreases the loss at every record."""
    import proper_ste_fig1

    res = proper_ste_fig1.main(["--quick", "--teachers", "relu", "--out", str(tmp_path)])["results"]["relu"]
    st = res["start"]
    assert abs(st["sample"] - st["exact"]) <= 5 * st["se"]
    assert st["se"] < 0.05 * st["exact"]  # the check has teeth
    true = res["exact"]["true"]["loss"]
    assert np.all(np.diff(true) <= 1e-12 * true[0])
    for method in ("paper", "exact"):
        for name in proper_ste_fig1.RUNS:
            d = res[method][name]
            assert np.all(np.isfinite(d["loss"])) and len(d["loss"]) == len(d["steps"])
    # The exact runs record the exact loss: at the end it is the loss of the final iterate.
    for name in proper_ste_fig1.RUNS:
        d = res["exact"][name]
        assert abs(d["loss"][-1] - d["exact_final_loss"]) <= 1e-12 * d["exact_final_loss"]
    assert (tmp_path / "fig1_relu.png").stat().st_size > 0 and (tmp_path / "summary.md").exists()


def test_bcgd_quantized_quick(tmp_path):
    """BCGD Sec. 3, quick: the best 1-bit filter's angle is the closed form
    arccos(|w*|_1 / (sqrt(n) |w*|)), every recorded quantity is finite, and a
    run counted as reaching the best filter ends at it."""
    res = _run("bcgd_quantized", tmp_path)
    ws = res["draws"]["ws"]
    n = ws.shape[1]
    closed = np.arccos(np.abs(ws).sum(axis=1) / (math.sqrt(n) * np.linalg.norm(ws, axis=1)))
    for (bits, grad, rho), M in res["meas"].items():
        assert bits == 1
        np.testing.assert_allclose(M["best"], closed, rtol=1e-12)
        assert np.all(np.isfinite(M["loss"])) and np.all(np.isfinite(M["angle"]))
        glob = M["outcome"] == "global_min"
        np.testing.assert_allclose(M["angle"][glob, -1], M["best"][glob], atol=1e-5)
        assert np.all(M["angle"] >= M["best"][:, None] - 1e-9)  # nothing in Q beats the best
def test_tian_relu_students_quick(tmp_path):
    """Tian Thm. 7 (2): symmetric starts x0 = y0 end at the saddle x* of Lemma 9's formula;
    Thm. 5: K = 1 from |w0 - w*| < |w*| reaches w*; theta0 = pi collapses w (eq. 48)."""
    res = _run("tian_relu_students", tmp_path)
    t7 = res["thm7"]
    xs = (1 - math.acos(1 / math.sqrt(2)) + math.pi) / (2 * math.pi)
    np.testing.assert_allclose(t7["diag_final_x"], xs, rtol=1e-10)
    np.testing.assert_allclose(t7["diag_final_y"], xs, rtol=1e-10)
    assert t7["diag_counts"]["saddle"] == t7["n_diag"] and t7["diag_hessian"] < 0
    assert res["thm5"]["reached"] == res["thm5"]["n"] > 0
    assert res["theta_pi"]["outcome"] == "unbounded"


def test_lee_sim_ye_neurons_quick(tmp_path):
    """Prop. 3.1/3.6 (flow = magnitude/angle ODE), Thm. 3.3-3.9 bounds along the sweep, and
    eq. 7/10: dphi/dt ~ |w|^(m-1), so the one-layer neuron aligns faster from a small init and a
    three-layer one slower."""
    res = _run("lee_sim_ye_neurons", tmp_path)
    for depth, D in res["per_depth"].items():
        assert D["ode_err_norm"] < 1e-7 and D["ode_err_phi"] < 1e-7
        assert D["norm_inside"] == D["angle_inside"] == D["n_grid"]
        h = np.asarray(D["hit"])
        assert np.all(np.isfinite(h))
        if depth == 1:
            assert np.all(np.diff(h) > 0)
        if depth >= 3:
            assert np.all(np.diff(h) < 0)
