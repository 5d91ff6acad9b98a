"""Population loss and gradients: exact Gaussian forms against Monte Carlo,
autodiff and finite differences; composability; robustness; dtypes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd

TEACHERS = ["binary", "relu", "tanh", "sin", "linear"]
STES = ["identity", "relu", "crelu", "clipped_identity"]


def f64(x):
    return jnp.asarray(x, jnp.float64)


def config(seed, m=3, n=4, act="relu", scale=1.0):
    rng = np.random.default_rng(seed)
    v = f64(rng.normal(size=m))
    w = f64(rng.normal(size=n)) * scale
    T = sd.Teacher(v=f64(rng.normal(size=m)), w=f64(rng.normal(size=n)) / math.sqrt(n) * 1.5, activation=act)
    return v, w, T


# A user-defined piecewise-constant proxy: exact on Gaussian data for free.
ASYM = sd.STE(
    "asym",
    derivative=lambda x, r: jnp.where((x > 0) & (x < r), 1.0, jnp.where((x > -r) & (x <= 0), 0.5, 0.0)).astype(x.dtype),
    windows=lambda r: ((0.0, r, 1.0), (-r, 0.0, 0.5)),
    uses_r=True,
)


@pytest.mark.parametrize("act", TEACHERS)
def test_exact_against_monte_carlo(act):
    """Every teacher x STE: |exact - MC mean| <= 5 standard errors, per component.

    N = 2e5 samples makes the standard error ~0.3% of the gradient scale, so a
    formula off by a few percent in any term fails.
    """
    sigma = 1.3
    v, w, T = config(7, act=act)
    G = sd.Gaussian(sigma)
    N = 200_000
    Z = sigma * jax.random.normal(jax.random.key(3), (N, 3, 4), jnp.float64)

    def per_sample(z, ste):
        return sd.coarse_grad(v, w, T, sd.Empirical(z[None]), ste=ste, r=0.9)

    def check(exact, samples):
        mean = jnp.mean(samples, axis=0)
        se = jnp.std(samples, axis=0) / math.sqrt(N)
        z = np.asarray(jnp.abs(exact - mean) / (se + 1e-12))
        assert np.all(z < 5.0), (np.asarray(exact), np.asarray(mean), z)

    losses = jax.vmap(lambda z: sd.population_loss(v, w, T, sd.Empirical(z[None])))(Z)
    check(sd.population_loss(v, w, T, G), losses)
    for ste in STES + [ASYM]:
        dv_s, dw_s = jax.jit(jax.vmap(lambda z: per_sample(z, ste)))(Z)
        dv, dw = sd.coarse_grad(v, w, T, G, ste=ste, r=0.9)
        check(dv, dv_s)
        check(dw, dw_s)


@pytest.mark.parametrize("act", TEACHERS)
def test_true_gradient_against_autodiff_and_finite_differences(act):
    v, w, T = config(11, act=act)
    G = sd.Gaussian(0.8)
    dv, dw = sd.population_grad(v, w, T, G)
    av, aw = jax.grad(sd.population_loss, argnums=(0, 1))(v, w, T, G)
    np.testing.assert_allclose(dv, av, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dw, aw, rtol=1e-10, atol=1e-13)
    # Central differences, step 1e-5: truncation ~1e-10, rounding ~1e-11.
    h = 1e-5
    L = lambda v, w: float(sd.population_loss(v, w, T, G))
    fd_w = [(L(v, w.at[i].add(h)) - L(v, w.at[i].add(-h))) / (2 * h) for i in range(w.size)]
    fd_v = [(L(v.at[i].add(h), w) - L(v.at[i].add(-h), w)) / (2 * h) for i in range(v.size)]
    np.testing.assert_allclose(dw, fd_w, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dv, fd_v, rtol=1e-6, atol=1e-9)


def test_v_gradient_is_the_same_for_every_ste_and_equals_true():
    # Yin Lemma 4, eq. 10: E[dl/dv] = dL/dv whatever the STE.
    for act in TEACHERS:
        v, w, T = config(5, act=act)
        G = sd.Gaussian(1.1)
        dv_true, _ = sd.population_grad(v, w, T, G)
        for ste in STES:
            dv, _ = sd.coarse_grad(v, w, T, G, ste=ste, r=0.7)
            np.testing.assert_allclose(dv, dv_true, rtol=1e-12, atol=1e-14)


def _at_angle(T, angle, scale):
    u = T.w / jnp.linalg.norm(T.w)
    p = jnp.zeros_like(u).at[0].set(-u[1]).at[1].set(u[0])
    p = p / jnp.linalg.norm(p)
    return scale * (jnp.cos(angle) * u + jnp.sin(angle) * p)


@pytest.mark.parametrize("act", TEACHERS)
def test_no_nan_at_extreme_angles_and_scales(act):
    """Values and jax.grad through them stay finite at angle 0, pi and |w| 1e-3..1e3."""
    v, _, T = config(2, act=act)
    G = sd.Gaussian(1.0)
    angles = f64([0.0, 1e-9, 1e-6, math.pi - 1e-6, math.pi - 1e-9, math.pi])
    scales = f64([1e-3, 1.0, 1e3])
    A, S = jnp.meshgrid(angles, scales, indexing="ij")
    W = jax.vmap(lambda a, s: _at_angle(T, a, s))(A.ravel(), S.ravel())

    def everything(v, w):
        out = [sd.population_loss(v, w, T, G), *sd.population_grad(v, w, T, G)]
        for ste in ["identity", "relu", "crelu"]:
            out += list(sd.coarse_grad(v, w, T, G, ste=ste, r=1.0))
        return out

    def scalarized(v, w):
        return sum(jnp.sum(o) for o in everything(v, w))

    vals = jax.jit(jax.vmap(everything, in_axes=(None, 0)))(v, W)
    grads = jax.jit(jax.vmap(jax.grad(scalarized, argnums=(0, 1)), in_axes=(None, 0)))(v, W)
    for o in [*vals, *grads]:
        assert np.all(np.isfinite(np.asarray(o)))


@pytest.mark.parametrize("act", ["relu", "tanh", "sin"])
def test_continuous_through_angle_zero_and_pi(act):
    """Near-aligned and opposite w are as accurate as generic points: the
    quantities are smooth in the angle there, so values 1e-6 rad away differ
    from the endpoint by O(1e-6) and a quadratic extrapolation from 1e-4,
    2e-4, 3e-4 rad matches the endpoint to O(1e-12)."""
    v, _, T = config(4, act=act)
    G = sd.Gaussian(1.0)
    f = jax.jit(lambda w: jnp.concatenate([sd.coarse_grad(v, w, T, G, ste="crelu", r=0.8)[1],
                                           sd.population_loss(v, w, T, G)[None]]))
    for end, sign in [(0.0, 1.0), (math.pi, -1.0)]:
        at = f(_at_angle(T, end, 1.3))
        near = f(_at_angle(T, end + sign * 1e-6, 1.3))
        assert np.max(np.abs(at - near)) < 1e-5 * (1 + np.max(np.abs(at)))
        d = 1e-4
        y1, y2, y3 = (f(_at_angle(T, end + sign * k * d, 1.3)) for k in (1, 2, 3))
        # Smooth in the signed angle (vector components have odd terms too):
        # quadratic extrapolation to 0 from d, 2d, 3d is exact up to O(d^3).
        extrap = 3 * y1 - 3 * y2 + y3
        np.testing.assert_allclose(extrap, at, rtol=1e-8, atol=1e-10)


def test_jit_vmap_unjitted_agree():
    v, w, T = config(9, act="relu")
    G = sd.Gaussian(1.2)
    fn = lambda v, w: sd.coarse_grad(v, w, T, G, ste="crelu", r=0.6)
    eager = fn(v, w)
    jitted = jax.jit(fn)(v, w)
    rng = np.random.default_rng(0)
    V = f64(rng.normal(size=(5, 3)))
    W = f64(rng.normal(size=(5, 4)))
    batched = jax.vmap(fn)(V, W)
    for i in range(5):
        one = fn(V[i], W[i])
        np.testing.assert_allclose(batched[1][i], one[1], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(eager[1], jitted[1], rtol=1e-13)


def test_vmap_over_teachers_sigma_and_r():
    v, w, T = config(1, act="tanh")
    rng = np.random.default_rng(1)
    Vs = f64(rng.normal(size=(4, 3)))
    Ws = f64(rng.normal(size=(4, 4)))
    sig = f64([0.5, 1.0, 1.5, 2.0])
    rs = f64([0.3, 0.6, 1.2, 2.4])
    Tb = sd.Teacher(v=Vs, w=Ws, activation="tanh")

    def one(T, data, r):
        return sd.coarse_grad(v, w, T, data, ste="crelu", r=r)[1]

    out = jax.vmap(one)(Tb, sd.Gaussian(sig), rs)
    for i in range(4):
        ref = one(sd.Teacher(Vs[i], Ws[i], "tanh"), sd.Gaussian(sig[i]), rs[i])
        np.testing.assert_allclose(out[i], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", TEACHERS)
def test_float32_matches_float64(act):
    v, w, T = config(3, act=act)
    T32 = sd.Teacher(T.v.astype(jnp.float32), T.w.astype(jnp.float32), act)
    v32, w32 = v.astype(jnp.float32), w.astype(jnp.float32)
    G32 = sd.Gaussian(jnp.float32(1.1))
    for ste in ["identity", "crelu"]:
        g32 = sd.coarse_grad(v32, w32, T32, G32, ste=ste, r=jnp.float32(0.9))
        g64 = sd.coarse_grad(v, w, T, sd.Gaussian(1.1), ste=ste, r=0.9)
        for a, b in zip(g32, g64):
            assert a.dtype == jnp.float32
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * float(jnp.max(jnp.abs(b))))
    l32 = sd.population_loss(v32, w32, T32, G32)
    assert l32.dtype == jnp.float32
    np.testing.assert_allclose(l32, sd.population_loss(v, w, T, sd.Gaussian(1.1)), rtol=1e-5)
    assert sd.population_grad(v32, w32, T32, G32)[1].dtype == jnp.float32


def test_empirical_true_gradient_vanishes_in_w():
    v, w, T = config(0, act="relu")
    Z = jax.random.normal(jax.random.key(0), (64, 3, 4), jnp.float64)
    dv, dw = sd.population_grad(v, w, T, sd.Empirical(Z))
    assert np.all(np.asarray(dw) == 0.0)
    cv, _ = sd.coarse_grad(v, w, T, sd.Empirical(Z), ste="relu")
    np.testing.assert_allclose(dv, cv, rtol=1e-13)


def test_custom_ste_without_windows():
    sig = sd.STE("sigmoid_prime", derivative=lambda x, r: jax.nn.sigmoid(x) * (1 - jax.nn.sigmoid(x)))
    v, w, T = config(0, act="relu")
    Z = jax.random.normal(jax.random.key(1), (128, 3, 4), jnp.float64)
    dv, dw = sd.coarse_grad(v, w, T, sd.Empirical(Z), ste=sig)
    assert np.all(np.isfinite(np.asarray(dw))) and np.any(np.asarray(dw) != 0)
    with pytest.raises(ValueError, match="no windows"):
        sd.coarse_grad(v, w, T, sd.Gaussian(1.0), ste=sig)
