"""Teacher activations and the Gaussian integrals the population engine needs.

Everything is written in standardized coordinates. With input rows ``z`` whose
entries are i.i.d. ``N(0, sigma^2)``, let ``s1 = w_hat . z / sigma`` (student
direction) and ``t = w*_hat . z / sigma`` (teacher direction): standard normals
with correlation ``c = cos(phi)``, ``s = sin(phi)``, and the teacher's
pre-activation is ``a t`` with ``a = sigma |w*|``. An :class:`Activation`
supplies, for its ``f``:

============================  ==============================================
``smoothed(mu, sd)``          ``E[f(mu + sd eps)]``, ``eps ~ N(0, 1)``
``mean(a)``                   ``E[f(a t)]``
``second_moment(a)``          ``E[f(a t)^2]``
``half_mean(a, phi, c, s)``   ``E[1{s1 > 0} f(a t)]``
``window_deriv(l, h, ...)``   ``E[1{l < s1 < h} f'(a t)]`` (``None`` = inf)
``deriv_scaled(a, s)``        ``s E[f'(a s eps)]`` (the true-gradient factor)
============================  ==============================================

The base class computes all of them by one-dimensional quadrature
(:func:`stedyn._numerics.gauss_integral`), conditioning on ``t`` so that the
student's half-space and window become closed-form normal CDFs; subclasses
override them with closed forms where those exist. The quadrature path is
therefore available to any smooth user activation, and the closed forms are
checked against it in the tests (a second derivation).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from . import _numerics as nm

_HALF_PI = 0.5 * math.pi


def _is_zero(x):
    """Whether ``x`` is a Python number equal to 0 (a window edge known at trace time)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


def _safe_div(num, den):
    """``num / den`` with ``den -> 0`` mapped to a huge finite value (gradient 0)."""
    small = jnp.abs(den) <= nm._tiny(den) * 1e4
    out = num / jnp.where(small, 1.0, den)
    # 1e30 is finite in float32 too, and far outside the quadrature cutoff.
    return jnp.where(small, jnp.sign(num) * 1e30, out)


class Activation:
    """A teacher activation ``f`` with its derivative, integrated by quadrature.

    Subclass and pass an instance as ``Teacher(activation=...)`` to use a
    smooth activation of your own: every population quantity then comes from
    the generic quadrature below. Override any method with a closed form.

    Attributes:
      name: identifier used in messages and registries.
    """

    name = "custom"

    def __call__(self, x):
        raise NotImplementedError

    def deriv(self, x):
        raise NotImplementedError

    # -- generic quadrature -------------------------------------------------
    def smoothed(self, mu, sd):
        dtype = jnp.result_type(mu, sd)
        center = -_safe_div(mu, sd)
        width = _safe_div(jnp.ones((), dtype), sd)
        return nm.gauss_integral(lambda e: self(mu + sd * e), features=[(center, width)], dtype=dtype)

    def mean(self, a):
        return self.smoothed(jnp.zeros_like(a), a)

    def second_moment(self, a):
        dtype = jnp.result_type(a)
        width = _safe_div(jnp.ones((), dtype), a)
        return nm.gauss_integral(lambda t: self(a * t) ** 2, features=[(0.0, width)], dtype=dtype)

    def deriv_scaled(self, a, s):
        dtype = jnp.result_type(a, s)
        width = _safe_div(jnp.ones((), dtype), a * s)
        return s * nm.gauss_integral(lambda e: self.deriv(a * s * e), features=[(0.0, width)], dtype=dtype)

    def half_mean(self, a, phi, c, s):
        dtype = jnp.result_type(a, c, s)
        fw = _safe_div(jnp.ones((), dtype), a)
        sw = _safe_div(s, jnp.abs(c))
        return nm.gauss_integral(
            lambda t: self(a * t) * nm.cdf_of_ratio(c * t, s),
            features=[(0.0, fw), (0.0, sw)],
            dtype=dtype,
        )

    def window_deriv(self, l, h, a, phi, c, s):
        dtype = jnp.result_type(a, c, s)
        fw = _safe_div(jnp.ones((), dtype), a)
        sw = _safe_div(s, jnp.abs(c))
        feats = [(0.0, fw)]
        if l is not None:
            feats.append((_safe_div(l, c), sw))
        if h is not None:
            feats.append((_safe_div(h, c), sw))

        def prob(t):
            # P(l < s1 < h | t) with s1 | t ~ N(c t, s^2).
            up = 1.0 if h is None else nm.cdf_of_ratio(h - c * t, s)
            dn = 0.0 if l is None else nm.cdf_of_ratio(l - c * t, s)
            return up - dn

        return nm.gauss_integral(lambda t: self.deriv(a * t) * prob(t), features=feats, dtype=dtype)

    def __repr__(self):
        return f"Activation({self.name!r})"


class Binary(Activation):
    """``f(x) = 1{x > 0}``: Yin et al. (2019), Lemmas 1, 2, 4, 7, 9."""

    name = "binary"

    def __call__(self, x):
        return (x > 0).astype(jnp.result_type(x))

    def deriv(self, x):
        raise TypeError("the binary activation has a Dirac derivative; it has closed forms only")

    def smoothed(self, mu, sd):
        return nm.cdf_of_ratio(mu, sd)

    def mean(self, a):
        return 0.5 * jnp.ones_like(a)

    def second_moment(self, a):
        return 0.5 * jnp.ones_like(a)

    def deriv_scaled(self, a, s):
        # s E[delta(a s eps)] = s phi(0) / (a s).
        return nm.INV_SQRT_2PI / a + 0.0 * s

    def half_mean(self, a, phi, c, s):
        # P(s1 > 0, t > 0) = (pi - phi) / (2 pi)  (Yin Lemma 9).
        return (math.pi - phi) / (2.0 * math.pi) + 0.0 * a

    def window_deriv(self, l, h, a, phi, c, s):
        # E[1{l<s1<h} delta(a t)] = phi(0)/a * P(l < s1 < h | t = 0), s1 | t=0 ~ N(0, s^2).
        up = 1.0 if h is None else (0.5 if _is_zero(h) else nm.cdf_of_ratio(h, s))
        dn = 0.0 if l is None else (0.5 if _is_zero(l) else nm.cdf_of_ratio(l, s))
        return nm.INV_SQRT_2PI / a * (up - dn)


class ReLU(Activation):
    """``f(x) = max(x, 0)``: Proper-STE paper, eq. 20, 25-27, 44-45."""

    name = "relu"

    def __call__(self, x):
        return jnp.maximum(x, 0.0)

    def deriv(self, x):
        return (x > 0).astype(jnp.result_type(x))

    def smoothed(self, mu, sd):
        return nm.gaussian_smoothed_relu(mu, sd)

    def mean(self, a):
        return a * nm.INV_SQRT_2PI

    def second_moment(self, a):
        return 0.5 * a * a

    def deriv_scaled(self, a, s):
        return 0.5 * s + 0.0 * a

    def half_mean(self, a, phi, c, s):
        # E[1{s1>0} a t 1{t>0}] = a (1 + c) / (2 sqrt(2 pi)) by Stein's lemma.
        return a * (1.0 + c) * (0.5 * nm.INV_SQRT_2PI)

    def window_deriv(self, l, h, a, phi, c, s):
        # P(l < s1 < h, t > 0) = G(l) - G(h), G(e) = P(s1 > e, t > 0) via Owen's T;
        # G(0) = (pi - phi) / (2 pi) (Yin Lemma 9) where an edge is a literal 0.
        def g(e):
            if _is_zero(e):
                return (math.pi - phi) / (2.0 * math.pi)
            return nm.orthant_cs(e, c, s)

        g_l = 0.5 if l is None else g(l)
        g_h = 0.0 if h is None else g(h)
        return (g_l - g_h) + 0.0 * a


class Linear(Activation):
    """``f(x) = x``."""

    name = "linear"

    def __call__(self, x):
        return x

    def deriv(self, x):
        return jnp.ones_like(x)

    def smoothed(self, mu, sd):
        return mu + 0.0 * sd

    def mean(self, a):
        return jnp.zeros_like(a)

    def second_moment(self, a):
        return a * a

    def deriv_scaled(self, a, s):
        return s + 0.0 * a

    def half_mean(self, a, phi, c, s):
        return a * c * nm.INV_SQRT_2PI

    def window_deriv(self, l, h, a, phi, c, s):
        up = 1.0 if h is None else nm.norm_cdf(h)
        dn = 0.0 if l is None else nm.norm_cdf(l)
        return (up - dn) + 0.0 * a


class Sin(Activation):
    """``f(x) = sin(x)``; ``E[sin(mu + sd eps)] = sin(mu) exp(-sd^2/2)``."""

    name = "sin"

    def __call__(self, x):
        return jnp.sin(x)

    def deriv(self, x):
        return jnp.cos(x)

    def smoothed(self, mu, sd):
        return jnp.sin(mu) * jnp.exp(-0.5 * sd * sd)

    def mean(self, a):
        return jnp.zeros_like(a)

    def second_moment(self, a):
        return -0.5 * jnp.expm1(-2.0 * a * a)

    def deriv_scaled(self, a, s):
        return s * jnp.exp(-0.5 * (a * s) ** 2)

    def half_mean(self, a, phi, c, s):
        # Condition on s1: E[sin(a t) | s1] = sin(a c s1) exp(-(a s)^2 / 2).
        dtype = jnp.result_type(a, c, s)
        return jnp.exp(-0.5 * (a * s) ** 2) * nm.gauss_integral(
            lambda x: jnp.sin(a * c * x), lo=jnp.zeros((), dtype), dtype=dtype
        )

    def window_deriv(self, l, h, a, phi, c, s):
        dtype = jnp.result_type(a, c, s)
        return jnp.exp(-0.5 * (a * s) ** 2) * nm.gauss_integral(
            lambda x: jnp.cos(a * c * x), lo=l, hi=h, dtype=dtype
        )


class Tanh(Activation):
    """``f(x) = tanh(x)``: no closed forms; the generic quadrature is used."""

    name = "tanh"

    def __call__(self, x):
        return jnp.tanh(x)

    def deriv(self, x):
        t = jnp.tanh(x)
        return 1.0 - t * t

    def mean(self, a):
        return jnp.zeros_like(a)


ACTIVATIONS = {cls.name: cls() for cls in (Binary, ReLU, Tanh, Sin, Linear)}


def resolve_activation(activation) -> Activation:
    """Map a name or :class:`Activation` instance to an instance, or raise ``ValueError``."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(
        f"activation must be one of {sorted(ACTIVATIONS)} or an stedyn.Activation instance; "
        f"got {activation!r}"
    )
