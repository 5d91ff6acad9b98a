"""Numerical primitives added for the dynamics' speed: a vectorizable atan2,
the batch-level lazy select, and the float32 Owen's T rule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from stedyn import _numerics as nm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_atan2_nonneg_within_a_few_ulp(dtype):
    rng = np.random.default_rng(0)
    th = np.concatenate([rng.uniform(0, np.pi, 200_000), np.geomspace(1e-30, 1e-1, 2000),
                         np.pi - np.geomspace(1e-7, 1e-1, 500), [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi]])
    rad = rng.uniform(1e-3, 1e3, th.size)
    y = np.abs(rad * np.sin(th)).astype(dtype)
    x = (rad * np.cos(th)).astype(dtype)
    ref = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    got = np.asarray(nm.atan2_nonneg(jnp.asarray(y), jnp.asarray(x))).astype(np.float64)
    ulp = np.spacing(ref.astype(dtype)).astype(np.float64)
    assert np.max(np.abs(got - ref) / ulp) <= 4
    # Relative accuracy down to tiny angles (no cancellation near 0).
    small = ref < 1e-3
    assert np.max(np.abs(got[small] - ref[small]) / ref[small].clip(np.finfo(dtype).tiny)) < 8 * np.finfo(dtype).eps


def test_atan2_nonneg_special_values():
    f = lambda y, x: float(nm.atan2_nonneg(jnp.float64(y), jnp.float64(x)))
    assert f(0.0, 0.0) == 0.0
    assert f(0.0, 1.0) == 0.0
    assert f(0.0, -1.0) == math.pi
    assert f(1.0, 0.0) == math.pi / 2
    assert f(1.0, -0.0) == math.pi / 2
    assert abs(f(1.0, 1.0) - math.pi / 4) <= 2e-16


def _moment(x, s):
    # Elementwise, like the narrow-window quadrature it stands for.
    return jnp.sin(x) * s + 1.0


def test_where_any_is_jnp_where_unbatched_and_batched():
    x = jnp.linspace(-1.0, 1.0, 7)
    s = jnp.linspace(0.5, 2.0, 7)
    pred = x > 0.4
    fallback = -x
    want = jnp.where(pred, _moment(x, s), fallback)

    # Same values as jnp.where up to rounding (fusion may differ by an ulp).
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    one = lambda p, fb, a, b: nm.where_any(p, _moment, fb, a, b)
    close(jax.vmap(one)(pred, fallback, x, s), want)
    close(jax.jit(jax.vmap(one))(pred, fallback, x, s), want)
    for i in range(7):  # unbatched: a real branch on a scalar
        close(jax.jit(one)(pred[i], fallback[i], x[i], s[i]), want[i])
    # Shared (unbatched) operands and nested vmaps.
    X = jnp.stack([x, x + 0.5])
    out = jax.vmap(jax.vmap(one, in_axes=(0, 0, 0, None)), in_axes=(0, 0, 0, None))(X > 0.4, -X, X, 1.5)
    close(out, jnp.where(X > 0.4, _moment(X, 1.5), -X))
    # No entry needs it: the fallback, and fn sits behind a conditional.
    none = jnp.zeros(7, bool)
    np.testing.assert_array_equal(jax.vmap(one)(none, fallback, x, s), fallback)
    assert "cond" in str(jax.make_jaxpr(jax.vmap(one))(pred, fallback, x, s))


def test_owens_t_float32_rule():
    h = np.linspace(0.0, 12.0, 241)
    a = np.concatenate([np.linspace(0.0, 3.0, 61), [10.0, 1e3]])
    H, A = np.meshgrid(h, a)
    p, q = np.sin(np.arctan(A)), np.cos(np.arctan(A))
    got = np.asarray(nm.owens_t_ratio(jnp.asarray(H, jnp.float32), jnp.asarray(p, jnp.float32),
                                      jnp.asarray(q, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, special.owens_t(H, A), atol=1e-7)


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-15), (np.float32, 2e-7)])
def test_orthant_shares_one_cdf(dtype, atol):
    # P(s1 > e, t > 0) for corr(s1, t) = c, against Owen's formula with scipy.
    for e in (-3.0, -0.7, 0.0, 0.3, 1.0, 2.5, 6.0):
        for phi in (0.0, 0.2, 1.3, math.pi / 2, 2.4, math.pi - 1e-3, math.pi):
            c, s = math.cos(phi), math.sin(phi)
            ref = 0.5 * special.ndtr(-e) + (special.owens_t(e, c / s) if s > 0 else
                                            (0.5 * special.ndtr(-abs(e)) * np.sign(c) if e != 0 else 0.25 * np.sign(c)))
            got = float(nm.orthant_cs(jnp.asarray(e, dtype), jnp.asarray(c, dtype), jnp.asarray(s, dtype)))
            assert abs(got - ref) <= atol, (e, phi, got, ref)
