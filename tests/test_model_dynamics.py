"""sd.run and sd.flow on the ReLU models: convergence, stopping, batching,
dtype; Lee-Sim-Ye's magnitude/angle ODEs (Prop. 3.1, 3.6) against the
simulated full-vector flow and an independent scipy integration; the bounds
of Thm. 3.3, 3.4, 3.8, 3.9 along trajectories; the gradient-descent
substitution of Thm. 4.1."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import stedyn as sd

WS = jnp.asarray([1.1, 0.0, 0.3, -0.4, 0.2])
VS = float(jnp.linalg.norm(WS))
NORMS = (0.05, 0.5, 1.0, 2.5)
PHIS = (0.3, 1.2, 2.0, 2.9)  # phi0 = pi - theta0
TIMES = np.linspace(0.0, 40.0, 81)


def _starts():
    rng = np.random.default_rng(0)
    W0, meta = [], []
    for n in NORMS:
        for ph in PHIS:
            W0.append(np.asarray(sd.w_at_angle(WS, math.pi - ph, norm=n)))
            meta.append((n, ph))
    del rng
    return jnp.asarray(np.array(W0)), meta


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda d: f"depth{d}")
def flows(request):
    depth = request.param
    M = sd.ReLUNeuron(WS, depth=depth)
    W0, meta = _starts()
    F = sd.flow(M, M.balanced(W0), times=TIMES)
    return depth, M, F, meta


def test_flow_matches_magnitude_angle_odes(flows):
    """Prop. 3.1 (depth 1) / 3.6: |w(t)| and phi(t) of the d-dimensional flow
    solve the two-scalar system, integrated here (dopri5) and by scipy (LSODA-free RK45)."""
    depth, M, F, meta = flows
    norm = np.asarray(F.trajectory["w_norm"])
    phi = math.pi - np.asarray(F.trajectory["angle"])
    n0 = jnp.asarray([a for a, _ in meta])
    p0 = jnp.asarray([b for _, b in meta])
    v, ph = sd.neuron_ode_solve(n0, p0, TIMES, v_star=VS, depth=depth)
    np.testing.assert_allclose(norm, v, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(phi, ph, rtol=1e-7, atol=1e-9)
    for k in (0, 5, 10, 15):  # an independent integrator
        sol = solve_ivp(lambda t, y: [float(a) for a in sd.neuron_ode(y[0], y[1], v_star=VS, depth=depth)],
                        (0, TIMES[-1]), [meta[k][0], meta[k][1]], t_eval=TIMES, rtol=1e-10, atol=1e-12, method="DOP853")
        np.testing.assert_allclose(norm[k], sol.y[0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(phi[k], sol.y[1], rtol=1e-6, atol=1e-8)
    if depth > 1:  # balanced initialization stays balanced
        np.testing.assert_allclose(F.trajectory["v_min"], norm, rtol=1e-7)
        np.testing.assert_allclose(F.trajectory["v_max"], norm, rtol=1e-7)
    # Thm. 3.2 / 3.7: phi increases strictly (until it is pi to rounding)
    dphi = np.diff(phi, axis=1)
    assert np.all(dphi >= -1e-12) and np.all(dphi[phi[:, 1:] < math.pi - 1e-9] > 0)


def test_bounds_hold_along_trajectories(flows):
    """Thm. 3.3 / 3.8 (magnitude) and 3.4 / 3.9 (angle, with r, R from the magnitude bounds)."""
    depth, M, F, meta = flows
    norm = np.asarray(F.trajectory["w_norm"])
    phi = math.pi - np.asarray(F.trajectory["angle"])
    slack = 1e-8  # integration error; a wrong bound misses by far more
    gaps = []
    for k, (n0, ph0) in enumerate(meta):
        lo, hi = sd.neuron_norm_bounds(jnp.asarray(TIMES), n0, ph0, v_star=VS, depth=depth)
        lo, hi = np.asarray(lo), np.asarray(hi)
        assert np.all(lo[1:] <= norm[k, 1:] + slack) and np.all(norm[k, 1:] <= hi[1:] + slack), (k, n0, ph0)
        r, R = sd.neuron_norm_range(n0, ph0, v_star=VS, depth=depth)
        assert np.min(norm[k]) >= float(r) - slack and np.max(norm[k]) <= float(R) + slack
        alo, ahi = sd.neuron_angle_bounds(jnp.asarray(TIMES), ph0, v_star=VS, depth=depth, r=r, R=R)
        alo, ahi = np.asarray(alo), np.asarray(ahi)
        assert np.all(alo <= phi[k] + slack) and np.all(phi[k] <= ahi + slack), (k, n0, ph0)
        gaps.append(np.max(hi - lo))
    assert max(gaps) > 1e-3  # the bounds are not trivially equal


def test_bounds_have_teeth():
    """A bound with a wrong rate is violated on the same trajectory (the test can fail)."""
    M = sd.ReLUNeuron(WS, depth=1)
    w0 = sd.w_at_angle(WS, math.pi - 2.0, norm=0.5)
    F = sd.flow(M, M.balanced(w0), times=TIMES)
    norm = np.asarray(F.trajectory["w_norm"])
    lo, hi = sd.neuron_norm_bounds(jnp.asarray(TIMES), 0.5, 2.0, v_star=VS, depth=1)
    wrong_hi = (1 - np.exp(-TIMES / 4)) * VS + 0.5 * np.exp(-TIMES / 4)  # rate 1/4 instead of 1/2
    assert np.all(norm[1:] < np.asarray(hi)[1:]) and np.any(norm[1:] > wrong_hi[1:])


def test_gd_substitution_exact_on_the_aligned_line():
    """Thm. 4.1: at theta0 = 0 the one-layer flow is |w*| + (|w0| - |w*|) e^{-t/2}; gradient
    descent is exactly g((1 - eta/2)^T), which is also Thm. A.1's upper bound (eps0 = 0)."""
    M = sd.ReLUNeuron(WS, depth=1)
    eta, T = 0.3, 60
    for n0 in (0.2, 3.0):
        R = sd.run(M, {"w": WS * (n0 / VS)}, lr=eta, steps=T, record_every=1)
        steps = R.steps
        exact = VS + (n0 - VS) * (1 - eta / 2) ** steps
        np.testing.assert_allclose(R.trajectory["w_norm"], exact, rtol=1e-13)
        lo, hi = sd.neuron_norm_bounds(jnp.asarray(steps), n0, math.pi, v_star=VS, depth=1, lr=eta)
        np.testing.assert_allclose(hi, exact, rtol=1e-13)
        np.testing.assert_allclose(lo, exact, rtol=1e-13)


def test_gd_tracks_flow_at_small_lr():
    """Gradient descent at step T is the flow at t = eta T up to O(eta)."""
    M = sd.ReLUNeuron(WS, depth=2)
    p0 = M.balanced(sd.w_at_angle(WS, 2.0, norm=0.4))
    etas = (0.02, 0.01)
    pb = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), p0)
    R = sd.run(M, pb, lr=jnp.asarray(etas), steps=1000, record_every=50)  # up to t = 20 and 10
    errs = []
    for k, eta in enumerate(etas):
        F = sd.flow(M, p0, times=R.steps * eta)
        within = R.steps * eta <= 10.0 + 1e-9  # compare both over the same span t <= 10
        diff = np.asarray(R.trajectory["angle"][k]) - np.asarray(F.trajectory["angle"])
        errs.append(np.max(np.abs(diff[within])))
    assert errs[1] < 0.6 * errs[0] and errs[0] < 0.05


def test_run_models_outcomes_batching_dtype():
    M = sd.ReLUNetwork(WS[None])
    w_good = sd.w_at_angle(WS, 1.0, norm=0.7)[None]
    w_pi = (-0.5 * WS)[None]  # theta = pi: Tian's eq. 48 shrinks w to 0
    W = jnp.stack([w_good, w_pi, 2 * w_good])
    R = sd.run(M, {"w": W}, lr=0.5, steps=2000)
    assert list(R.outcome) == ["global_min", "unbounded", "global_min"]
    assert int(R.stop_step[1]) > 0 and int(R.stop_step[0]) == -1
    # a batched run equals the single run
    Rk = sd.run(M, {"w": W[1]}, lr=0.5, steps=2000)
    np.testing.assert_allclose(Rk.params["w"], R.params["w"][1], rtol=1e-12, atol=1e-300)
    assert Rk.outcome == R.outcome[1] and int(Rk.stop_step) == int(R.stop_step[1])
    # lr batched; float32 preserved
    R32 = sd.run(jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), M),
                 {"w": jnp.asarray(W, jnp.float32)}, lr=jnp.asarray([0.5, 0.5, 0.25], jnp.float32), steps=500)
    assert R32.w.dtype == jnp.float32 and R32.trajectory["loss"].dtype == jnp.float32
    assert R32.outcome[0] == "global_min"


def test_run_model_stops_at_last_good_state():
    """lr = 10 > 4: |1 - lr/2| > 1 on the one-layer neuron, |w| grows geometrically and the run
    stops as unbounded when it leaves the w_ratio range, keeping its last finite state."""
    M = sd.ReLUNeuron(WS, depth=1)
    R = sd.run(M, {"w": sd.w_at_angle(WS, 1.0, norm=1.0)}, lr=10.0, steps=200, record_every=1)
    assert R.outcome == "unbounded" and 0 < int(R.stop_step) < 200
    assert bool(jnp.all(jnp.isfinite(R.w))) and float(jnp.linalg.norm(R.w)) > 1e8  # the step that left the range


def test_run_model_dead_neuron_is_a_flat_spurious_minimum():
    """Lee-Sim-Ye Prop. 3.5: once v_2 <= 0 the neuron is dead (P = 0), the loss is locally
    constant at E[f*^2]/2 and gradient descent is stuck there; an overshooting step (lr = 5 from
    |w0| = 3, depth 3) gets there, and the run says spurious_min (stationary, flat Hessian)."""
    M = sd.ReLUNeuron(WS, depth=3)
    R = sd.run(M, M.balanced(sd.w_at_angle(WS, 1.0, norm=3.0)), lr=5.0, steps=50, record_every=1)
    assert float(jnp.min(R.params["v"][1:])) <= 0
    np.testing.assert_allclose(float(R.final["rel_loss"]), 1.0, rtol=1e-12)
    assert float(R.final["grad_norm"]) == 0.0
    assert R.outcome == "spurious_min"


def test_run_model_optax_and_cnn():
    import optax

    T = sd.Teacher(jnp.asarray([1.0, -0.5, 0.8]), jnp.asarray([0.6, 0.8, 0.0, 0.0]), "relu")
    M = sd.ReLUCNN(T)
    p0 = {"v": jnp.asarray([0.3, 0.2, -0.1]), "w": jnp.asarray(sd.w_at_angle(T.w, 1.0))}
    R = sd.run(M, p0, lr=0.1, steps=4000)
    assert R.outcome == "global_min", R.final
    Ra = sd.run(M, p0, optimizer=optax.adam, lr=0.01, steps=300)
    assert float(Ra.final["loss"]) < float(Ra.trajectory["loss"][0])


def test_run_model_errors():
    M = sd.ReLUNeuron(WS, depth=2)
    p0 = M.balanced(WS)
    with pytest.raises(ValueError, match="rule must be 'true'"):
        sd.run(M, p0, rule="coarse")
    with pytest.raises(ValueError, match="takes no teacher or data"):
        sd.run(M, p0, sd.Teacher(jnp.ones(1), WS))
    with pytest.raises(ValueError, match=r"params\['v'\] must have shape"):
        sd.run(M, {"w": WS, "v": jnp.ones(3)})
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        sd.run(M, p0, lr=-1.0)
    with pytest.raises(ValueError, match="give exactly one of t_end"):
        sd.flow(M, p0)
    with pytest.raises(ValueError, match="lr: the paper gives no gradient-descent"):
        sd.neuron_norm_bounds(jnp.arange(3), 1.0, 1.0, v_star=1.0, depth=3, lr=0.1)
    with pytest.raises(ValueError, match="batch axes disagree"):
        sd.run(M, {"w": jnp.stack([WS] * 2), "v": jnp.ones((3, 1))})


def test_flow_float32_dtype_and_accuracy():
    """sd.flow keeps float32 (default tolerances 1e-5 / 1e-7) and lands near the float64 flow."""
    M64 = sd.ReLUNeuron(WS, depth=2)
    p64 = M64.balanced(sd.w_at_angle(WS, 2.0, norm=0.5))
    M32 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), M64)
    p32 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), p64)
    F32 = sd.flow(M32, p32, 20.0, num=21)
    F64 = sd.flow(M64, p64, 20.0, num=21)
    assert F32.params["w"].dtype == jnp.float32 and F32.trajectory["angle"].dtype == jnp.float32
    np.testing.assert_allclose(F32.trajectory["angle"], F64.trajectory["angle"], atol=2e-4)
    np.testing.assert_allclose(F32.trajectory["w_norm"], F64.trajectory["w_norm"], rtol=2e-4)
    assert not bool(F32.exhausted)
