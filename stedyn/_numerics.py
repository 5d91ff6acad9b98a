"""Safe numerical primitives shared by every closed form in stedyn.

Each function here exists because the obvious expression fails somewhere that
matters for the dynamics (angle 0 or pi, tiny or huge scales) or in its
gradient. The docstrings say where the naive form breaks.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

SQRT_2PI = math.sqrt(2.0 * math.pi)
INV_SQRT_2PI = 1.0 / SQRT_2PI
INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def safe_norm(x, axis=-1):
    """Euclidean norm whose gradient at ``x = 0`` is 0 instead of NaN.

    ``jnp.linalg.norm`` differentiates as ``x / |x|``, which is ``0/0`` at the
    origin. The angle formula below takes norms of ``w_hat - w*_hat``, which is
    exactly zero at the global minimum, so the naive gradient would poison a
    whole training run there.
    """
    sq = jnp.sum(x * x, axis=axis)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def safe_normalize(x, axis=-1):
    """``x / |x|``, and 0 where ``x = 0`` (value and gradient finite)."""
    n = safe_norm(x, axis=axis)
    pos = n > 0
    return jnp.where(pos[..., None], x / jnp.where(pos, n, 1.0)[..., None], 0.0)


def angle_cos_sin(u, v):
    """Angle between two nonzero vectors, with its cosine and sine.

    Uses Kahan's form ``phi = 2 atan2(|u^ - v^|, |u^ + v^|)``. ``arccos`` of the
    normalized dot product loses half the significant digits near 0 and pi
    (a 1e-8 rad angle comes out as 0 or 1.5e-8) and has an infinite
    derivative there; ``atan2(|u x v|, u.v)`` needs a cross product that has no
    stable n-dimensional form. Kahan's form is accurate to a few ulp at every
    angle, and with :func:`safe_norm` its gradient is finite at 0 and pi.

    Args:
      u, v: arrays of shape (n,), both nonzero.

    Returns:
      ``(phi, cos(phi), sin(phi), u_hat, v_hat)``.
    """
    uh = u / safe_norm(u)[..., None]
    vh = v / safe_norm(v)[..., None]
    phi = 2.0 * jnp.arctan2(safe_norm(uh - vh), safe_norm(uh + vh))
    return phi, jnp.cos(phi), jnp.sin(phi), uh, vh


# atan(u) = u + u z P(z), z = u^2, |u| <= tan(pi/8): the Taylor series
# sum_k (-1)^k z^k / (2k + 1) (k >= 1), alternating with terms below
# tan(pi/8)^(2k) / (2k + 1); truncated where the first omitted term is under
# a quarter ulp (float32: 9 terms, float64: 20).
_ATAN_TERMS = {32: 9, 64: 20}


def atan2_nonneg(y, x):
    """``atan2(y, x)`` for ``y >= 0``, in ``[0, pi]``, in vectorizable arithmetic.

    ``jnp.arctan2`` lowers on CPU to a scalar library call per element
    (measured 30 ns per element, against 2-5 ns for ``exp`` or ``erfc``),
    which made it the single most expensive operation of a reduced-coordinate
    step. Here: ``t = min(y, |x|) / max(y, |x|)`` in [0, 1]; for
    ``t > tan(pi/8)`` the exact reduction ``atan(t) = pi/4 + atan((t - 1) /
    (t + 1))``; then an odd polynomial (the Taylor series, truncated for the
    dtype) on ``|u| <= tan(pi/8)``; then the octant and the sign of ``x``.
    Accurate to a few ulp of the result, relative near 0 (no cancellation in
    ``u + u z P(z)``) and absolute (``ulp(pi)``) near pi, like ``arctan2``.
    ``atan2(0, 0) = 0``.
    """
    dtype = jnp.result_type(y, x)
    ax = jnp.abs(x)
    lo = jnp.minimum(y, ax)
    hi = jnp.maximum(y, ax)
    t = lo / jnp.where(hi > 0, hi, 1.0)
    upper = t > 0.41421356237309503  # tan(pi/8)
    u = jnp.where(upper, (t - 1.0) / (t + 1.0), t)
    z = u * u
    n = _ATAN_TERMS.get(jnp.finfo(dtype).bits, 20)
    poly = jnp.zeros_like(z)
    for k in range(n - 1, 0, -1):
        poly = poly * z + ((-1.0) ** k / (2 * k + 1))
    # pi/4 as an array of the input dtype: a where of two Python floats would
    # be a float64 select under x64 mode, whatever the dtype of y and x.
    at = jnp.where(upper, jnp.full_like(u, 0.25 * math.pi), 0.0) + (u + u * (z * poly))
    at = jnp.where(y > ax, 0.5 * math.pi - at, at)
    return jnp.where(x < 0, math.pi - at, at)


def norm_pdf(x):
    """Standard normal density."""
    return INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


def norm_pdf_diff(l, h):
    """``phi(l) - phi(h)`` without cancellation; ``None`` stands for +-inf.

    For a narrow window (``h - l`` small, e.g. the clipped-ReLU STE at
    ``|w| >> r / sigma``) the plain difference of two nearly equal densities
    has relative error ``eps / (h - l)^2``; ``-phi(l) expm1(-(h - l)(h + l)/2)``
    keeps full precision.
    """
    if l is None and h is None:
        return 0.0
    if l is None:
        return -norm_pdf(h)
    if h is None:
        return norm_pdf(l)
    return -norm_pdf(l) * jnp.expm1(-0.5 * (h - l) * (h + l))


def norm_cdf(x):
    """Standard normal CDF through ``erfc``.

    ``0.5 * (1 + erf(x / sqrt 2))`` underflows to 0 for x < -8 and loses all
    relative accuracy in the lower tail; ``erfc`` keeps it.
    """
    return 0.5 * jax.scipy.special.erfc(-x * INV_SQRT_2)


def _tiny(x):
    return jnp.finfo(jnp.result_type(x)).tiny


def cdf_of_ratio(num, den):
    """``Phi(num / den)`` for ``den >= 0``, including the limit ``den -> 0``.

    At ``den = 0`` the ratio is ``+-inf`` (or NaN for ``0/0``) and the gradient
    ``phi(num/den) * d(num/den)`` is ``0 * inf = NaN``. The limit is the step
    ``1{num > 0}`` (1/2 at ``num = 0``), whose derivative is 0 away from the
    jump; both branches are kept finite ("double where").
    """
    small = den <= _tiny(den) * 1e4
    safe_den = jnp.where(small, 1.0, den)
    val = norm_cdf(jnp.where(small, 0.0, num) / safe_den)
    # 1/2 as an array of num's dtype: a where of two Python floats would be a
    # float64 select under x64 mode, whatever the dtype of num.
    step = jnp.where(num > 0, 1.0, jnp.where(num < 0, 0.0, jnp.full_like(num, 0.5)))
    return jnp.where(small, step, val)


def gaussian_smoothed_relu(mu, sd):
    """``E[max(mu + sd * eps, 0)]`` for ``eps ~ N(0, 1)``, ``sd >= 0``.

    Closed form ``mu Phi(mu/sd) + sd phi(mu/sd)``; at ``sd -> 0`` it is
    ``max(mu, 0)``, handled without dividing by zero.
    """
    small = sd <= _tiny(sd) * 1e4
    safe_sd = jnp.where(small, 1.0, sd)
    q = jnp.where(small, 0.0, mu) / safe_sd
    val = mu * norm_cdf(q) + safe_sd * norm_pdf(q)
    return jnp.where(small, jnp.maximum(mu, 0.0), val)


def where_any(pred, fn, fallback, *operands):
    """``jnp.where(pred, fn(*operands), fallback)``, running ``fn`` only if needed.

    Under ``jax.vmap`` a ``lax.cond`` on a per-entry predicate becomes a
    select that evaluates both branches for every entry. Here the batching
    rule reduces the predicate over the whole batch instead: ``fn`` runs (on
    every entry, elementwise) only when at least one entry needs it, and is
    skipped otherwise. Nested vmaps reduce level by level. ``fn`` must be
    elementwise in its operands (any common shape) and may close over static
    values only; everything traced goes in ``operands``. Forward evaluation
    only: no reverse-mode derivative.
    """

    # Only fn's value goes through the conditional; the select happens
    # outside it. With ``fallback`` inside a branch, XLA may move its
    # computation into the branches and compile it differently there, and
    # then the same configuration rounds differently depending on whether
    # another entry of its batch took the branch (seen as 1-ulp float32
    # differences between sweep chunkings).
    value = _any_then(fn, jax.eval_shape(fn, *operands), pred, *operands)
    return jnp.where(pred, value, fallback)


def _any_then(fn, out, pred, *operands):
    """``fn(*operands)`` if any entry of ``pred`` (over vmapped batches too), else zeros."""

    @jax.custom_batching.custom_vmap
    def run(pred, *ops):
        return jax.lax.cond(jnp.any(pred), lambda: fn(*ops), lambda: jnp.zeros(out.shape, out.dtype))

    @run.def_vmap
    def _rule(axis_size, in_batched, pred, *ops):
        args = [
            x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))
            for x, b in zip((pred,) + tuple(ops), in_batched)
        ]
        shape = jax.ShapeDtypeStruct((axis_size,) + tuple(out.shape), out.dtype)
        return _any_then(fn, shape, args[0], *args[1:]), True

    return run(pred, *operands)


# ---------------------------------------------------------------------------
# Quadrature rules (nodes computed once in float64 with NumPy, cast on use).


@functools.lru_cache(maxsize=None)
def _gauss_legendre_np(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


@functools.lru_cache(maxsize=None)
def _tanh_sinh_np(level_h: float, t_max: float):
    """Tanh-sinh nodes and weights on [-1, 1].

    Returned as ``(1 - x, 1 + x, w)`` pairs so endpoints keep full relative
    precision: the nodes cluster within 1e-20 of the ends, where ``x`` itself
    would round to +-1.
    """
    k = np.arange(-int(round(t_max / level_h)), int(round(t_max / level_h)) + 1)
    t = k * level_h
    u = 0.5 * np.pi * np.sinh(t)
    # 1 - tanh(u) = 2 / (exp(2u) + 1), computed without cancellation.
    one_minus = 2.0 / (np.exp(2.0 * u) + 1.0)
    one_plus = 2.0 / (np.exp(-2.0 * u) + 1.0)
    w = level_h * 0.5 * np.pi * np.cosh(t) / np.cosh(u) ** 2
    keep = w > 1e-300
    return one_minus[keep], one_plus[keep], w[keep]


def gauss_legendre(n: int, dtype):
    """Gauss-Legendre nodes and weights on [-1, 1] as arrays of ``dtype``."""
    x, w = _gauss_legendre_np(n)
    return jnp.asarray(x, dtype), jnp.asarray(w, dtype)


@functools.lru_cache(maxsize=None)
def gauss_legendre_pairs(n: int):
    """Gauss-Legendre ``(node, weight)`` pairs on [-1, 1] as Python floats.

    For sums written as a Python loop over the nodes: each term is then an
    elementwise operation on the caller's arrays, so a vmapped batch gives
    one fused loop over the batch. A node axis reduced with ``jnp.sum``
    instead becomes a short minor axis of length n that XLA's CPU backend
    does not vectorize across the batch (measured: 8 exponentials summed
    over a node axis cost 4x more per batch entry than the unrolled sum).
    """
    x, w = _gauss_legendre_np(n)
    return tuple(zip(x.tolist(), w.tolist()))


# Truncation of the real line for the Gaussian weight: phi(12) ~ 2e-32, far
# below float64 resolution relative to any O(1) integral.
GAUSS_CUTOFF = 12.0
# Fixed segment ends at the integers of the bulk of the Gaussian: on a single
# long segment the tanh-sinh rule resolves phi(u) only to ~1e-10, and unit
# segments keep oscillating teachers (sin(a t), a up to ~8) at ~1e-13.
_FIXED_BREAKS = tuple(float(k) for k in range(-8, 9))


def gauss_integral(fn, lo=None, hi=None, *, features=(), dtype):
    """``int_lo^hi phi(u) fn(u) du`` by tanh-sinh quadrature between breakpoints.

    The integrands in stedyn are analytic except at a few known points: kinks
    and jumps of the teacher activation, edges of an STE window, and smoothed
    steps ``Phi((b - u) / width)`` whose width shrinks to zero as the angle
    goes to 0 or pi. Each such feature is a segment end, with extra ends at
    ``center +- width * (1, 4, 16)`` so that a feature of any width fills a
    segment of comparable size. A fixed Gauss-Hermite rule over the whole
    line converges slowly for a jump or a feature much narrower than 1, and a
    single tanh-sinh segment only reaches ~1e-8 on a step of width 1e-3
    (measured); with the graded ends the error is at rounding level for widths
    from 1 down to 1e-12.

    Args:
      fn: vectorized callable on an array of points.
      lo, hi: scalar limits or ``None`` for ``-inf`` / ``+inf``.
      features: sequence of ``(center, width)``; ``width`` is ``None`` for a
        plain breakpoint (jump or kink). Traced values are allowed; points are
        clipped into ``[lo, hi]``.
      dtype: floating dtype of the result.

    Returns:
      Scalar integral.
    """
    cut = GAUSS_CUTOFF
    a = jnp.clip(jnp.asarray(-cut if lo is None else lo, dtype), -cut, cut)
    b = jnp.clip(jnp.asarray(cut if hi is None else hi, dtype), -cut, cut)
    b = jnp.maximum(a, b)
    pts = [a, b] + [jnp.asarray(p, dtype) for p in _FIXED_BREAKS]
    for center, width in features:
        center = jnp.asarray(center, dtype)
        pts.append(center)
        if width is not None:
            for k in (1.0, 4.0, 16.0):
                pts.append(center + k * width)
                pts.append(center - k * width)
    pts = jnp.sort(jnp.clip(jnp.stack(pts), a, b))
    left, right = pts[:-1], pts[1:]
    one_minus, one_plus, w = _tanh_sinh_np(1.0 / 8.0, 3.25)
    om = jnp.asarray(one_minus, dtype)
    op = jnp.asarray(one_plus, dtype)
    wq = jnp.asarray(w, dtype)
    half = 0.5 * (right - left)
    # Node positions measured from whichever end is nearer, so a node 1e-20
    # from a jump stays on the correct side of it.
    nodes = jnp.where(
        om[None, :] < op[None, :],
        right[:, None] - half[:, None] * om[None, :],
        left[:, None] + half[:, None] * op[None, :],
    )
    vals = norm_pdf(nodes) * fn(nodes)
    return jnp.sum(half * jnp.sum(wq[None, :] * vals, axis=1))


# Gauss-Legendre orders for Owen's T in the form ``int_0^a exp(-h^2 (1 + x^2) / 2)
# / (1 + x^2) dx`` with ``0 <= a <= 1`` (measured against scipy's owens_t over
# h in [0, 12], a in [0, 1]): 6 nodes reach 2e-9 absolute, below float32
# rounding of T's O(1/4) companions in the orthant probability (8 nodes:
# 3e-12, 5 nodes: 2e-8); 20 nodes reach 2.4e-13 relative for h <= 8 and
# 6e-17 absolute.
_OWEN_ORDER = {32: 6, 64: 20}


def _bits(dtype):
    return jnp.finfo(dtype).bits


def owens_t_ratio(h, p, q):
    """Owen's T function ``T(h, p / q)`` for ``q >= 0`` (``q = 0``: ``a = +-inf``).

    ``T(h, a) = (1/2pi) int_0^a exp(-h^2 (1 + x^2) / 2) / (1 + x^2) dx``. For
    ``|a| <= 1`` the integrand is smooth on ``[0, |a|]`` (poles at ``+-i``, at
    distance 1) and a fixed Gauss-Legendre rule in ``x`` is accurate to
    rounding with 6 nodes in float32 and 20 in float64 (see ``_OWEN_ORDER``).
    For ``|a| > 1`` the reflection
    ``T(h, a) + T(a h, 1/a) = 1/4 - (Phi(h) - 1/2)(Phi(a h) - 1/2)``
    (``h, a >= 0``) moves the work to ``1/a < 1``. Only the selected branch's
    integral is evaluated (one rule, not one per branch), and the ratio form
    takes ``cot(phi) = cos / sin`` straight from the geometry, with angle 0 or
    pi (``q = 0``) finite.
    """
    h = jnp.abs(h)
    return _owens_t(h, p, q, norm_cdf(-h))


def _owens_t(h, p, q, tail):
    """:func:`owens_t_ratio` for ``h >= 0`` given ``tail = Phi(-h)``.

    The reflection needs ``Phi(h) - 1/2 = 1/2 - Phi(-h)``; taking it from the
    caller lets :func:`orthant_cs` share one normal CDF with its own
    ``Phi(-e)`` (same accuracy: both round at ``ulp(1/2)``).
    """
    dtype = jnp.result_type(h, p, q)
    rule = gauss_legendre_pairs(_OWEN_ORDER.get(_bits(dtype), 20))
    sgn = jnp.sign(p)
    ap = jnp.abs(p)
    near = ap <= q
    big = jnp.maximum(ap, q)
    # Reduced slope min(|a|, 1/|a|) in [0, 1]; 0 for p = q = 0.
    red = jnp.minimum(ap, q) / jnp.where(big > 0, big, 1.0)
    tiny_q = q <= _tiny(q) * 1e4
    ah = jnp.where(tiny_q, jnp.inf, h * ap / jnp.where(tiny_q, 1.0, q))
    fin = jnp.isfinite(ah)
    ah_fin = jnp.where(fin, ah, 0.0)
    hh = jnp.where(near, h, ah_fin)
    # Elementwise in h, p, q (any shape): one term per node (see
    # gauss_legendre_pairs).
    half_h2 = -0.5 * hh * hh
    total = jnp.zeros_like(hh)
    for xk, wk in rule:
        xs = (0.5 * (xk + 1.0)) * red
        one_x2 = 1.0 + xs * xs
        total = total + wk * jnp.exp(half_h2 * one_x2) / one_x2
    t_int = (0.25 / math.pi) * red * total
    t_int = jnp.where(near | fin, t_int, 0.0)
    phi_ah = jnp.where(fin, norm_cdf(ah_fin), 1.0)
    refl = 0.25 - (0.5 - tail) * (phi_ah - 0.5) - t_int
    return sgn * jnp.where(near, t_int, refl)


def owens_t_angle(h, alpha):
    """Owen's T function ``T(h, tan(alpha))`` for ``alpha`` in [-pi/2, pi/2].

    Taking the angle ``alpha = atan(a)`` as the argument keeps ``a = +-inf``
    finite; see :func:`owens_t_ratio`.
    """
    return owens_t_ratio(h, jnp.sin(alpha), jnp.cos(alpha))


def orthant_cs(e, c, s):
    """``P(s1 > e, t > 0)`` for standard normals with ``corr(s1, t) = c = cos(phi)``.

    ``s = sin(phi) >= 0``. Owen's formula
    ``int_e^inf phi(x) Phi(x cot(phi)) dx = Phi(-e)/2 + T(e, cot(phi))``, with
    ``cot(phi) = c / s`` passed as a ratio (no trigonometry, exact at angle 0
    and pi).
    """
    h = jnp.abs(e)
    tail = norm_cdf(-h)
    return 0.5 * jnp.where(e >= 0, tail, 1.0 - tail) + _owens_t(h, c, s, tail)


def upper_orthant(e, alpha):
    """``P(s1 > e, t > 0)`` for standard normals with ``corr(s1, t) = sin(alpha)``.

    Here ``alpha = pi/2 - phi`` with ``phi`` the angle between student and
    teacher, so the correlation is ``cos(phi)``; see :func:`orthant_cs`.
    """
    return orthant_cs(e, jnp.sin(alpha), jnp.cos(alpha))
