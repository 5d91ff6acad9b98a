"""Teacher activations: closed forms against the generic quadrature path and scipy.

The base :class:`stedyn.Activation` computes every Gaussian integral by
quadrature, conditioning on the teacher coordinate; the subclasses override
them with closed forms (Owen's T, Stein's lemma, Gaussian smoothing of sin).
Agreement of the two is a second derivation of each closed form, and scipy's
adaptive quadrature is an independent third for tanh, which has no closed form.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from stedyn import _numerics as nm
from stedyn._activations import ACTIVATIONS, Activation

GENERIC = Activation  # unbound generic methods, applied to a closed-form instance
ANGLES = [0.0, 1e-7, 1e-3, 0.4, 1.0, math.pi / 2, 2.0, math.pi - 1e-3, math.pi - 1e-7, math.pi]
SCALES = [0.05, 0.7, 2.0, 6.0]
WINDOWS = [(None, None), (0.0, None), (0.0, 0.3), (0.0, 2.5), (-1.2, 1.2), (0.5, 4.0), (-3.0, -0.1)]
CLOSED = ["relu", "linear", "sin"]


def f64(x):
    return jnp.asarray(x, jnp.float64)


def geom(phi):
    return f64(phi), f64(math.cos(phi)), f64(math.sin(phi))


def close(a, b, rtol=1e-10, atol=1e-13):
    a, b = float(a), float(b)
    assert abs(a - b) <= atol + rtol * abs(b), (a, b, abs(a - b))


@pytest.mark.parametrize("name", CLOSED)
def test_moments_closed_vs_quadrature(name):
    act = ACTIVATIONS[name]
    for a in SCALES:
        close(act.mean(f64(a)), GENERIC.mean(act, f64(a)))
        close(act.second_moment(f64(a)), GENERIC.second_moment(act, f64(a)))
        for mu, sd_ in [(0.0, 1.0), (1.3, 0.2), (-2.0, 3.0), (0.7, 1e-9), (0.5, 0.0)]:
            close(act.smoothed(f64(mu), f64(sd_)), GENERIC.smoothed(act, f64(mu), f64(sd_)))


def _grid():
    P, A = np.meshgrid(np.array(ANGLES), np.array(SCALES), indexing="ij")
    P, A = f64(P.ravel()), f64(A.ravel())
    return P, jnp.cos(P), jnp.sin(P), A


def _close_arrays(x, y, rtol=1e-10, atol=1e-13):
    x, y = np.asarray(x), np.asarray(y)
    err = np.abs(x - y)
    bad = err > atol + rtol * np.abs(y)
    assert not bad.any(), (x[bad], y[bad])


@pytest.mark.parametrize("name", CLOSED)
def test_half_mean_and_window_closed_vs_quadrature(name):
    """Over angles 0..pi (incl. 1e-7 from the ends) and teacher scales, vmapped."""
    act = ACTIVATIONS[name]
    P, C, S, A = _grid()
    half = jax.jit(jax.vmap(act.half_mean))
    half_q = jax.jit(jax.vmap(lambda a, p, c, s: GENERIC.half_mean(act, a, p, c, s)))
    _close_arrays(half(A, P, C, S), half_q(A, P, C, S))
    dsc = jax.jit(jax.vmap(lambda a, s: GENERIC.deriv_scaled(act, a, s)))
    _close_arrays(jax.vmap(act.deriv_scaled)(A, S), dsc(A, S))
    for l, h in WINDOWS:
        lo = None if l is None else f64(l)
        hi = None if h is None else f64(h)
        closed = jax.jit(jax.vmap(lambda a, p, c, s: act.window_deriv(lo, hi, a, p, c, s)))
        quad = jax.jit(jax.vmap(lambda a, p, c, s: GENERIC.window_deriv(act, lo, hi, a, p, c, s)))
        _close_arrays(closed(A, P, C, S), quad(A, P, C, S))


def _bivariate(fn, lo, hi, a, phi):
    """E[1{lo < s1 < hi} fn(a t)] with scipy: condition on t, inner CDF exact."""
    c, s = math.cos(phi), math.sin(phi)

    def integrand(t):
        if s < 1e-300:
            inside = (lo < c * t) and (c * t < hi)
            p = 1.0 if inside else 0.0
        else:
            p = stats.norm.cdf((hi - c * t) / s) - stats.norm.cdf((lo - c * t) / s)
        return stats.norm.pdf(t) * fn(a * t) * p

    pts = [0.0] + [x / c for x in (lo, hi) if abs(c) > 1e-12 and np.isfinite(x) and abs(x / c) < 30]
    pts = sorted(set(pts))
    edges = [-40.0] + pts + [40.0]
    return sum(
        integrate.quad(integrand, u, v, epsabs=1e-15, epsrel=1e-13, limit=500)[0]
        for u, v in zip(edges[:-1], edges[1:])
    )


def test_tanh_against_scipy():
    """tanh has no closed form: the quadrature path against scipy's adaptive quad."""
    act = ACTIVATIONS["tanh"]
    phis = [0.0, 1e-7, 0.9, 2.2, math.pi - 1e-7, math.pi]
    scales = [0.3, 1.5, 5.0]
    grid = [(p, a) for p in phis for a in scales]
    P = f64([g[0] for g in grid])
    A = f64([g[1] for g in grid])
    C, S = jnp.cos(P), jnp.sin(P)
    sech2 = lambda x: 1.0 / math.cosh(x) ** 2

    ref = [_bivariate(math.tanh, 0.0, np.inf, a, p) for p, a in grid]
    _close_arrays(jax.jit(jax.vmap(act.half_mean))(A, P, C, S), ref, rtol=1e-10, atol=1e-12)
    for lo, hi in [(-np.inf, np.inf), (0.0, np.inf), (0.0, 0.8), (-0.5, 0.5)]:
        ref = [_bivariate(sech2, lo, hi, a, p) for p, a in grid]
        l = None if lo == -np.inf else f64(lo)
        h = None if hi == np.inf else f64(hi)
        wd = jax.jit(jax.vmap(lambda a, p, c, s: act.window_deriv(l, h, a, p, c, s)))
        _close_arrays(wd(A, P, C, S), ref, rtol=1e-10, atol=1e-12)
    ref2 = [
        integrate.quad(lambda t: stats.norm.pdf(t) * math.tanh(a * t) ** 2, -40, 40, points=[0.0],
                       epsabs=1e-15, epsrel=1e-13, limit=500)[0]
        for a in scales
    ]
    _close_arrays(jax.jit(jax.vmap(act.second_moment))(f64(scales)), ref2)


def test_owens_t_against_scipy():
    for h in [0.0, 0.3, 1.0, 2.5, 6.0, -1.7]:
        for alpha in [0.0, 0.2, 0.7, math.pi / 4, 1.0, 1.4, math.pi / 2 - 1e-9, -0.5, -1.3]:
            ref = special.owens_t(h, math.tan(alpha))
            close(nm.owens_t_angle(f64(h), f64(alpha)), ref, rtol=1e-12, atol=1e-16)
        close(nm.owens_t_angle(f64(h), f64(math.pi / 2)), 0.5 * stats.norm.sf(abs(h)), atol=1e-16)


def test_kahan_angle_accuracy():
    # Exact angles by construction: u = e1, v = cos t e1 + sin t e2.
    for t in [0.0, 1e-12, 1e-8, 1e-3, 1.0, math.pi - 1e-8, math.pi]:
        u = f64([1.0, 0.0, 0.0])
        v = f64([math.cos(t), math.sin(t), 0.0]) * 3.0
        phi, c, s, _, _ = nm.angle_cos_sin(u, v)
        assert abs(float(phi) - t) <= 4e-16 * max(1.0, t)
        # arccos of the normalized dot product would fail this at t = 1e-8
        g = jax.grad(lambda x: nm.angle_cos_sin(x, v)[0])(u)
        assert np.all(np.isfinite(np.asarray(g)))


def test_safe_primitives_gradients_finite():
    for fn in [
        lambda x: nm.safe_norm(x * jnp.zeros(3)),
        lambda x: jnp.sum(nm.safe_normalize(x * jnp.zeros(3))),
        lambda x: nm.cdf_of_ratio(x, 0.0 * x),
        lambda x: nm.gaussian_smoothed_relu(x, 0.0 * x),
    ]:
        g = jax.grad(fn)(f64(0.7))
        assert np.isfinite(float(g))


def test_float32_preserved():
    for name, act in ACTIVATIONS.items():
        a = jnp.float32(1.3)
        p, c, s = (jnp.float32(x) for x in (0.4, math.cos(0.4), math.sin(0.4)))
        fn = jax.jit(lambda a, p, c, s: [act.mean(a), act.second_moment(a), act.half_mean(a, p, c, s),
                                         act.deriv_scaled(a, s), act.window_deriv(0.0 * a, 1.0 + 0.0 * a, a, p, c, s)])
        out = fn(a, p, c, s)
        for o in out:
            assert o.dtype == jnp.float32, (name, o.dtype)
