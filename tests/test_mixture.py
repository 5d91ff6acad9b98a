"""Exact Gaussian-mixture engine (stedyn._mixture) against independent references.

* K = 1 with zero means is the Gaussian model: the closed forms of
  stedyn._gaussian (Yin Lemma 1-4, Proper-STE eq. 6-10), relative error at
  most 1e-7 (the issue's accuracy target), also 1e-4 rad from alignment and at
  exactly angle 0 and pi.
* Monte Carlo: per-sample loss, dL/dv and coarse gradient written out here
  from their definitions (Yin eq. 5), averaged over samples drawn with
  ``sample_mixture``; every component within 5 standard errors for every
  teacher x STE, K in {1, 3}, generic and near-aligned w.
* The true gradient against central finite differences of the exact loss.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd
from stedyn._ste import BUILTIN_STES

TEACHERS = ("binary", "relu", "tanh", "sin", "linear")
STES = tuple(sorted(BUILTIN_STES))
# One shape (m, n, K) throughout, so the compiled programs (a few seconds
# each in float64) are shared between tests.
M_, N_, K_ = 3, 4, 3


def _unit(x):
    return x / np.linalg.norm(x)


def _at_angle(ws, angle, norm, rng):
    """A vector at ``angle`` from ``ws`` with norm ``norm`` (float64 numpy)."""
    u = _unit(ws)
    p = rng.normal(size=ws.shape)
    p = _unit(p - (p @ u) * u)
    return norm * (math.cos(angle) * u + math.sin(angle) * p)


def _problem(seed, m, n, K, *, zero_means=False):
    rng = np.random.default_rng(seed)
    vs = rng.normal(size=m)
    ws = rng.normal(size=n)
    v = rng.normal(size=m)
    means = np.zeros((K, m, n)) if zero_means else 0.6 * rng.normal(size=(K, m, n))
    sigma = np.full(K, 0.8) if K == 1 else rng.uniform(0.5, 1.2, size=K)
    weights = None if K == 1 else _unit(rng.uniform(0.2, 1.0, size=K)) ** 2
    return rng, v, vs, ws, means, sigma, weights


# ---------------------------------------------------------------------------
# One component with zero means is the Gaussian model.


GEOMS = {
    "generic": None,
    "near_0": 1e-4,
    "near_pi": math.pi - 1e-4,
    "at_0": 0.0,
    "at_pi": math.pi,
}


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("act", ["binary", "relu"])
@pytest.mark.parametrize("geom", list(GEOMS))
def test_one_zero_mean_component_is_the_gaussian_model(act, geom):
    rng, v, vs, ws, _, _, _ = _problem(1, M_, N_, 1)
    angle = GEOMS[geom]
    w = rng.normal(size=N_) if angle is None else _at_angle(ws, angle, 1.7, rng)
    if angle in (0.0, math.pi):
        w = (1.0 if angle == 0.0 else -1.0) * 1.7 * _unit(ws)  # exactly (anti)parallel
    v, vs, ws, w = (jnp.asarray(x) for x in (v, vs, ws, w))
    T = sd.Teacher(vs, ws, act)
    G = sd.Gaussian(0.8)
    M = sd.GaussianMixture(jnp.zeros((1, M_, N_)), 0.8)
    assert _rel(sd.population_loss(v, w, T, M), sd.population_loss(v, w, T, G)) <= 1e-7
    for ste in STES:
        a = sd.coarse_grad(v, w, T, M, ste=ste, r=1.3)
        b = sd.coarse_grad(v, w, T, G, ste=ste, r=1.3)
        for x, y in zip(a, b):
            assert np.all(np.isfinite(x))
            assert _rel(x, y) <= 1e-7, (ste, _rel(x, y))
    # The true w-gradient vanishes at exactly 0 and pi and is O(angle) next to
    # them, so it is compared in absolute terms against the v-gradient's scale.
    a = sd.population_grad(v, w, T, M)
    b = sd.population_grad(v, w, T, G)
    scale = np.linalg.norm(b[0])
    assert _rel(a[0], b[0]) <= 1e-7
    assert np.all(np.isfinite(a[1]))
    assert np.linalg.norm(a[1] - b[1]) <= 1e-7 * max(np.linalg.norm(b[1]), 1e-3 * scale)


# ---------------------------------------------------------------------------
# Monte Carlo from the definitions.


def _per_sample(Z, v, w, vs, ws, act, ste, r):
    """Loss, dL/dv and the coarse w-gradient of one sample ``Z`` (m, n).

    Yin eq. 5: ``g_w = (y - y*) sum_i v_i mu'(z_i . w) z_i`` with the STE's
    derivative ``mu'``; ``dl/dv = (y - y*) step(Z w)``.
    """
    x = Z @ w
    h = (x > 0).astype(Z.dtype)
    fx = sd.Teacher(vs, ws, act).act(Z @ ws)
    res = v @ h - vs @ fx
    mu = BUILTIN_STES[ste].derivative(x, r)
    return 0.5 * res * res, res * h, res * (v * mu) @ Z


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("act", TEACHERS)
@pytest.mark.parametrize("angle", [None, 2e-3])
def test_exact_within_monte_carlo_standard_errors(K, act, angle):
    """K = 1 (nonzero means) enters as weights (1, 0, 0) on the K = 3 shape.

    That is the one-component mixture exactly and reuses the compiled K = 3
    programs; the shape-(1, m, n) path is the Gaussian test above.
    """
    m, n, N = M_, N_, 400_000
    rng, v, vs, ws, means, sigma, weights = _problem(10 + K, m, n, K_)
    if K == 1:
        weights = np.array([1.0, 0.0, 0.0])
    w = rng.normal(size=n) if angle is None else _at_angle(ws, angle, 1.2, rng)
    v, vs, ws, w = (jnp.asarray(x) for x in (v, vs, ws, w))
    mix = sd.GaussianMixture(jnp.asarray(means), jnp.asarray(sigma), jnp.asarray(weights))
    T = sd.Teacher(vs, ws, act)
    Z = sd.sample_mixture(mix, N, key=jax.random.key(7 + K))
    r = jnp.asarray(1.1)

    def check(exact, samples, what):
        samples = np.asarray(samples).reshape(N, -1)
        mean = samples.mean(0)
        se = samples.std(0, ddof=1) / math.sqrt(N)
        err = np.abs(np.ravel(exact) - mean)
        # 5 standard errors, plus a floor for entries that are exactly 0.
        assert np.all(err <= 5.0 * se + 1e-12), (what, err / np.maximum(se, 1e-300))
        return se

    loss_s, dv_s, _ = jax.vmap(lambda Zi: _per_sample(Zi, v, w, vs, ws, act, "identity", r))(Z)
    se = check(sd.population_loss(v, w, T, mix), loss_s, "loss")
    # The check has teeth: the standard error is a small fraction of the value.
    assert se[0] < 0.01 * float(sd.population_loss(v, w, T, mix))
    check(sd.population_grad(v, w, T, mix)[0], dv_s, "true dL/dv")
    rel_se = []
    for ste in STES:
        _, dv_s, dw_s = jax.vmap(lambda Zi: _per_sample(Zi, v, w, vs, ws, act, ste, r))(Z)
        gv, gw = sd.coarse_grad(v, w, T, mix, ste=ste, r=r)
        check(gv, dv_s, f"{ste} coarse v")
        rel_se.append(np.max(check(gw, dw_s, f"{ste} coarse w")) / np.linalg.norm(gw))
    assert np.median(rel_se) < 0.05, rel_se


# ---------------------------------------------------------------------------
# The true gradient.


@pytest.mark.parametrize("act", TEACHERS)
@pytest.mark.parametrize("angle", [0.7, 1e-2, math.pi - 1e-2])
def test_true_gradient_matches_finite_differences(act, angle):
    rng, v, vs, ws, means, sigma, weights = _problem(3, M_, N_, K_)
    w = _at_angle(ws, angle, 0.9, rng)
    mix = sd.GaussianMixture(jnp.asarray(means), jnp.asarray(sigma), jnp.asarray(weights))
    T = sd.Teacher(jnp.asarray(vs), jnp.asarray(ws), act)
    v, w = jnp.asarray(v), jnp.asarray(w)
    gv, gw = sd.population_grad(v, w, T, mix)
    h = 1e-6
    fd_w = np.array(
        [(sd.population_loss(v, w + h * e, T, mix) - sd.population_loss(v, w - h * e, T, mix)) / (2 * h) for e in jnp.eye(N_)]
    )
    fd_v = np.array(
        [(sd.population_loss(v + h * e, w, T, mix) - sd.population_loss(v - h * e, w, T, mix)) / (2 * h) for e in jnp.eye(M_)]
    )
    assert np.allclose(gw, fd_w, rtol=1e-6, atol=1e-8)
    assert np.allclose(gv, fd_v, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act", TEACHERS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradients_finite_at_exact_alignment(act, sign):
    _, v, vs, ws, means, sigma, weights = _problem(4, M_, N_, K_)
    mix = sd.GaussianMixture(jnp.asarray(means), jnp.asarray(sigma), jnp.asarray(weights))
    T = sd.Teacher(jnp.asarray(vs), jnp.asarray(ws), act)
    v, w = jnp.asarray(v), jnp.asarray(sign * 1.4 * ws)
    outs = [sd.population_loss(v, w, T, mix), *sd.population_grad(v, w, T, mix)]
    for ste in STES:
        outs += list(sd.coarse_grad(v, w, T, mix, ste=ste, r=1.0))
    if act == "relu":
        # jax.grad through the coarse gradient at the alignment point.
        outs.append(jax.grad(lambda w: sd.coarse_grad(v, w, T, mix, ste="crelu", r=1.0)[1].sum())(w))
    for x in outs:
        assert np.all(np.isfinite(x))
    # Continuity: the coarse gradient at alignment is the limit from 1e-7 rad.
    rng = np.random.default_rng(0)
    w_near = jnp.asarray(_at_angle(np.asarray(sign * ws), 1e-7, 1.4 * np.linalg.norm(ws), rng))
    a = sd.coarse_grad(v, w, T, mix, ste="crelu", r=1.0)
    b = sd.coarse_grad(v, w_near, T, mix, ste="crelu", r=1.0)
    for x, y in zip(a, b):
        assert _rel(x, y) <= 1e-5


# ---------------------------------------------------------------------------
# Transformations and dtypes.


def _small_mixture(dtype):
    _, v, vs, ws, means, sigma, weights = _problem(5, M_, N_, K_)
    c = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    return c(v), sd.Teacher(c(vs), c(ws), "tanh"), sd.GaussianMixture(c(means), c(sigma), c(weights)), c(ws)


def test_jit_vmap_and_loop_agree():
    v, T, mix, ws = _small_mixture(jnp.float64)
    W = jnp.asarray(np.random.default_rng(1).normal(size=(4, N_)))
    f = lambda w: sd.coarse_grad(v, w, T, mix, ste="crelu", r=1.0)  # noqa: E731
    looped = [f(w) for w in W]
    batched = jax.vmap(f)(W)
    jitted = [jax.jit(f)(w) for w in W]
    for i in range(4):
        for k in range(2):
            np.testing.assert_allclose(batched[k][i], looped[i][k], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(jitted[i][k], looped[i][k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", ["binary", "relu", "tanh"])  # the float32 rule's support (moments) and smooth paths
@pytest.mark.parametrize("angle", [None, 1e-3])  # its smooth and sharp regimes
def test_float32_keeps_dtype_and_agrees_with_float64(act, angle):
    out = {}
    rng = np.random.default_rng(2)
    for dt in (jnp.float32, jnp.float64):
        v, T, mix, ws = _small_mixture(dt)
        T = sd.Teacher(T.v, T.w, act)
        w = rng.normal(size=N_) if angle is None else _at_angle(np.asarray(ws, np.float64), angle, 1.1, rng)
        w = jnp.asarray(w, dt)
        res = [sd.population_loss(v, w, T, mix), *sd.coarse_grad(v, w, T, mix, ste="crelu", r=1.0)]
        if angle is None:
            # Next to alignment the true w-gradient is O(angle) and float32
            # keeps only its leading digits; far from it all of them.
            res += list(sd.population_grad(v, w, T, mix))
        assert all(x.dtype == dt for x in res)
        out[dt] = res
        rng = np.random.default_rng(2)
    for a, b in zip(out[jnp.float32], out[jnp.float64]):
        assert _rel(a, b) <= 2e-5


# ---------------------------------------------------------------------------
# Sampling and bad input.


def test_sample_mixture_moments_and_key():
    means = jnp.asarray(np.random.default_rng(3).normal(size=(2, 2, 3)))
    mix = sd.GaussianMixture(means, jnp.asarray([0.5, 2.0]), jnp.asarray([0.25, 0.75]))
    N = 200_000
    Z = sd.sample_mixture(mix, N, key=jax.random.key(0))
    assert Z.shape == (N, 2, 3) and Z.dtype == jnp.float64
    mean = 0.25 * means[0] + 0.75 * means[1]
    var = 0.25 * (0.25 + means[0] ** 2) + 0.75 * (4.0 + means[1] ** 2) - mean**2
    se = jnp.sqrt(var / N)
    assert np.all(np.abs(Z.mean(0) - mean) <= 5 * se)
    assert np.array_equal(Z, sd.sample_mixture(mix, N, key=jax.random.key(0)))
    assert sd.sample_mixture(mix, 4, key=jax.random.key(0), dtype=jnp.float32).dtype == jnp.float32
    with pytest.raises(TypeError):
        sd.sample_mixture(mix, 4, jax.random.key(0))  # the key is keyword-only


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(means=np.zeros((3, 4))), r"means"),
        (dict(means=np.zeros((1, 3, 5))), r"means must have shape \(K, m, n\)"),
        (dict(means=np.zeros((0, 3, 4))), r"at least one component"),
        (dict(sigma=0.0), r"sigma must be finite and > 0"),
        (dict(sigma=-1.0), r"sigma must be finite and > 0"),
        (dict(sigma=np.ones(3)), r"sigma must be a scalar or have shape"),
        (dict(weights=np.array([0.5, 0.2])), r"weights must sum to 1"),
        (dict(weights=np.array([1.5, -0.5])), r"weights must be >= 0"),
        (dict(weights=np.ones(3) / 3), r"weights must have shape"),
        (dict(means=np.full((2, 3, 4), np.nan)), r"means"),
    ],
)
def test_bad_mixture_input_is_a_clear_error(kwargs, match):
    base = dict(means=np.zeros((2, 3, 4)), sigma=1.0, weights=None)
    base.update(kwargs)
    mix = sd.GaussianMixture(**{k: (jnp.asarray(x) if isinstance(x, np.ndarray) else x) for k, x in base.items()})
    T = sd.Teacher(jnp.ones(3), jnp.ones(4), "relu")
    with pytest.raises(ValueError, match=match):
        sd.population_loss(jnp.ones(3), jnp.ones(4), T, mix)
    with pytest.raises(ValueError, match=match):
        sd.coarse_grad(jnp.ones(3), jnp.ones(4), T, mix, ste="crelu")
