"""sd.run: update rules against a plain Python loop, outcomes on constructed
cases, batching, divergence isolation, dtypes and validation."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import stedyn as sd


def problem(seed=0, m=4, n=6, act="relu"):
    rng = np.random.default_rng(seed)
    T = sd.Teacher(jnp.asarray(rng.normal(size=m)), jnp.asarray(rng.normal(size=n)), act)
    v0 = jnp.asarray(rng.normal(size=m))
    w0 = sd.w_at_angle(T.w, 1.2, norm=1.3)
    return v0, w0, T


def python_loop(v, w, T, data, *, steps, lr, rule, ste="crelu", r=1.0, opt=None):
    """The reference: the public one-configuration functions, stepped in Python."""
    losses = [float(sd.population_loss(v, w, T, data))]
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
        state = opt.init((v, w)) if opt is not None else None
    for _ in range(steps):
        if rule == "true":
            gv, gw = sd.population_grad(v, w, T, data)
        else:
            gv, gw = sd.coarse_grad(v, w, T, data, ste=ste, r=r)
        if opt is None:
            v, w = v - lr * gv, w - lr * gw
        else:
            with jax.numpy_dtype_promotion("standard"):
                upd, state = opt.update((gv, gw), state, (v, w))
            v, w = v + upd[0], w + upd[1]
        if rule == "normalized":
            w = w / jnp.linalg.norm(w)
        losses.append(float(sd.population_loss(v, w, T, data)))
    return v, w, np.asarray(losses)


@pytest.mark.parametrize(
    "act,rule,ste",
    [("relu", "coarse", "crelu"), ("binary", "coarse", "relu"), ("relu", "true", "crelu"),
     ("binary", "normalized", "relu"), ("tanh", "coarse", "identity")],
)
def test_rules_match_python_loop(act, rule, ste):
    v0, w0, T = problem(1, act=act)
    data = sd.Gaussian(1.3)
    steps, k = 23, 5  # a stride that does not divide the steps: last record is the final state
    res = sd.run(v0, w0, T, data, ste=ste, r=0.8, lr=0.07, steps=steps, rule=rule, record_every=k)
    v, w, losses = python_loop(v0, w0, T, data, steps=steps, lr=0.07, rule=rule, ste=ste, r=0.8)
    np.testing.assert_allclose(res.v, v, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(res.w, w, rtol=1e-12, atol=1e-13)
    assert list(res.steps) == [0, 5, 10, 15, 20, 23]
    np.testing.assert_allclose(res.trajectory["loss"], losses[res.steps], rtol=1e-12)
    assert res.trajectory["w_norm"].shape == (6,)
    np.testing.assert_allclose(res.final["w_norm"], np.linalg.norm(w), rtol=1e-12)


def test_optax_factory_and_transform_match_python_loop():
    v0, w0, T = problem(2)
    data = sd.Gaussian(1.0)
    opt = optax.adam(0.02)
    v, w, _ = python_loop(v0, w0, T, data, steps=15, lr=None, rule="coarse", opt=opt)
    a = sd.run(v0, w0, T, data, optimizer=optax.adam, lr=0.02, steps=15)
    b = sd.run(v0, w0, T, data, optimizer=opt, steps=15)
    for res in (a, b):
        np.testing.assert_allclose(res.v, v, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(res.w, w, rtol=1e-12, atol=1e-13)
    mom = functools.partial(optax.sgd, momentum=0.9)
    v, w, _ = python_loop(v0, w0, T, data, steps=15, lr=None, rule="normalized", ste="relu", opt=mom(0.05))
    c = sd.run(v0, w0, T, data, optimizer=mom, lr=0.05, steps=15, rule="normalized", ste="relu")
    np.testing.assert_allclose(c.w, w, rtol=1e-12, atol=1e-13)


def test_outcomes_on_constructed_cases():
    """Each outcome from a start whose fate the papers fix."""
    m, n = 4, 6
    rng = np.random.default_rng(3)
    vs = jnp.asarray([1.0, -0.5, 0.8, 0.3])  # (m+1)|v*|^2 > 2 (1^T v*)^2: the angle-pi point is a minimum
    T = sd.Teacher(vs, jnp.asarray(rng.normal(size=n)), "relu")
    Tb = sd.Teacher(vs, T.w, "binary")
    assert bool(sd.saddle_exists(T))
    g = sd.Gaussian(1.0)
    w0 = sd.crelu_w0(1.0, 1.0)
    v_0, _ = sd.global_min(T, 1.0)
    v_pi, _ = sd.spurious_min(Tb, 1.0)
    v_bar, a_bar, _ = sd.saddle_point(Tb, 1.0)
    near = dict(lr=0.05, steps=400)
    # crelu from a generic start: global minimum at |w| = w0 (Proper-STE Sec. 3).
    res = sd.run(jnp.asarray(rng.normal(size=m)), sd.w_at_angle(T.w, 1.0), T, g, ste="crelu", lr=0.05, steps=4000)
    assert res.outcome == "global_min"
    np.testing.assert_allclose(res.final["w_norm"], w0, rtol=1e-8)
    # identity STE at v_0, angle 0: the w direction is radial and nonzero, |w| drifts (eq. 25).
    res = sd.run(v_0, sd.w_at_angle(T.w, 0.0), T, g, ste="identity", **near)
    assert res.outcome == "unbounded"
    assert res.final["w_norm"] > 5.0 and res.final["angle"] < 1e-8
    # ReLU STE at the binary-teacher spurious minimum and saddle: fixed points (Yin Lemma 6).
    res = sd.run(v_pi, sd.w_at_angle(Tb.w, math.pi), Tb, g, ste="relu", **near)
    assert res.outcome == "spurious_min"
    res = sd.run(v_bar, sd.w_at_angle(Tb.w, a_bar), Tb, g, ste="relu", **near)
    assert res.outcome == "saddle"
    # A teacher with no middle saddle: the angle-pi point is itself a saddle.
    Ts = sd.Teacher(jnp.ones(m), T.w, "binary")
    assert not bool(sd.saddle_exists(Ts))
    v_pi_s, _ = sd.spurious_min(Ts, 1.0)
    res = sd.run(v_pi_s, sd.w_at_angle(Ts.w, math.pi), Ts, g, ste="relu", **near)
    assert res.outcome == "saddle"
    # Too large a step: the iterates blow up; the step is recorded and the state stays finite.
    res = sd.run(v_0 + 1.0, sd.w_at_angle(T.w, 1.0), T, g, ste="crelu", lr=50.0, steps=300)
    assert res.outcome == "diverged"
    assert 0 < int(res.stop_step) <= 300
    assert np.all(np.isfinite(res.v)) and np.all(np.isfinite(res.w))
    # Too few steps.
    res = sd.run(jnp.asarray(rng.normal(size=m)), sd.w_at_angle(T.w, 2.0), T, g, ste="crelu", lr=0.01, steps=10)
    assert res.outcome == "not_converged"
    assert int(res.stop_step) == -1


def test_batch_equals_loop_and_divergence_is_isolated():
    B, m, n = 5, 3, 4
    rng = np.random.default_rng(4)
    T = sd.Teacher(jnp.asarray(rng.normal(size=(B, m))), jnp.asarray(rng.normal(size=(B, n))), "relu")
    v0 = jnp.asarray(rng.normal(size=(B, m)))
    w0 = jnp.asarray(rng.normal(size=(B, n)))
    lr = jnp.asarray([0.05, 0.05, 1e3, 0.02, 0.05])  # the third run diverges
    r = jnp.asarray([0.5, 1.0, 1.0, 2.0, 1.0])
    sig = jnp.asarray([1.0, 0.7, 1.0, 1.5, 1.0])
    res = sd.run(v0, w0, T, sd.Gaussian(sig), ste="crelu", r=r, lr=lr, steps=200, record_every=50)
    assert res.outcome.shape == (B,) and res.trajectory["loss"].shape == (B, 5)
    assert res.outcome[2] == "diverged"
    for i in range(B):
        Ti = sd.Teacher(T.v[i], T.w[i], "relu")
        one = sd.run(v0[i], w0[i], Ti, sd.Gaussian(sig[i]), ste="crelu", r=r[i], lr=lr[i], steps=200, record_every=50)
        np.testing.assert_allclose(res.v[i], one.v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res.trajectory["loss"][i], one.trajectory["loss"], rtol=1e-12)
        assert res.outcome[i] == one.outcome
    others = np.delete(np.asarray(res.trajectory["loss"]), 2, axis=0)
    assert np.all(np.isfinite(others))
    # Shared leaves broadcast: one teacher, batched starts only.
    T1 = sd.Teacher(T.v[0], T.w[0], "relu")
    res2 = sd.run(v0, w0, T1, sd.Gaussian(1.0), lr=0.05, steps=20)
    one = sd.run(v0[3], w0[3], T1, sd.Gaussian(1.0), lr=0.05, steps=20)
    np.testing.assert_allclose(res2.w[3], one.w, rtol=1e-12)


def test_float32_runs_keep_dtype_and_agree_with_float64():
    v0, w0, T = problem(5)
    T32 = sd.Teacher(T.v.astype(jnp.float32), T.w.astype(jnp.float32), "relu")
    a = sd.run(v0.astype(jnp.float32), w0.astype(jnp.float32), T32, sd.Gaussian(1.0), lr=0.05, steps=300)
    b = sd.run(v0, w0, T, sd.Gaussian(1.0), lr=0.05, steps=300)
    assert a.v.dtype == jnp.float32 and a.trajectory["loss"].dtype == jnp.float32
    np.testing.assert_allclose(a.w, b.w, rtol=1e-4, atol=1e-5)


def test_empirical_data_and_zero_steps():
    v0, w0, T = problem(6, m=2, n=3)
    Z = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2, 3)))
    res = sd.run(v0, w0, T, sd.Empirical(Z), ste="relu", lr=0.05, steps=10)
    assert np.all(np.isfinite(res.trajectory["loss"]))
    assert np.all(np.isnan(res.trajectory["stationary_dist"]))  # no theory for a sample
    res = sd.run(v0, w0, T, sd.Gaussian(1.0), steps=0)
    assert list(res.steps) == [0]
    np.testing.assert_array_equal(res.w, w0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rule="adam"), "rule must be one of"),
        (dict(steps=-1), "steps must be an int"),
        (dict(steps=2.5), "steps must be an int"),
        (dict(record_every=0), "record_every"),
        (dict(lr=-0.1), "lr must be finite and > 0"),
        (dict(r=0.0), "r must be finite and > 0"),
        (dict(ste="bogus"), "ste"),
        (dict(optimizer=optax.adam(0.1), lr=0.1), "lr must be left out"),
        (dict(optimizer=3), "optimizer must be"),
        (dict(tol=1e-3), "tol must be"),
    ],
)
def test_run_rejects_bad_arguments(kwargs, match):
    v0, w0, T = problem(7)
    with pytest.raises(ValueError, match=match):
        sd.run(v0, w0, T, sd.Gaussian(1.0), **kwargs)


def test_run_rejects_bad_shapes_and_batches():
    v0, w0, T = problem(8)
    with pytest.raises(ValueError, match="batch axes disagree"):
        sd.run(jnp.stack([v0, v0]), jnp.stack([w0, w0, w0]), T, sd.Gaussian(1.0))
    with pytest.raises(ValueError, match="w0 must be nonzero"):
        sd.run(jnp.stack([v0, v0]), jnp.stack([w0, 0 * w0]), T, sd.Gaussian(1.0))
    with pytest.raises(ValueError, match="Gaussian.sigma"):
        sd.run(v0, w0, T, sd.Gaussian(jnp.asarray([1.0, -1.0])))
    with pytest.raises(ValueError, match="v and teacher.v"):
        sd.run(v0[:2], w0, T, sd.Gaussian(1.0))
    with pytest.raises(ValueError, match="Tolerances.angle_tol"):
        sd.Tolerances(angle_tol=2.0)
