"""Exact population quantities for Gaussian input (one configuration).

Model: ``y = v^T step(Z w)``, teacher ``y* = v*^T f(Z w*)``, rows ``z_i`` of
``Z`` i.i.d. with entries ``N(0, sigma^2)``, loss ``(y - y*)^2 / 2``.

Derivation (generalizes Yin et al. Lemmas 1, 2, 4, 7 and the Proper-STE
eq. 20, 25-27, 44-45 to any teacher activation, any piecewise-constant STE and
any sigma). Rows are independent, so every expectation splits into a diagonal
part (one row) and products of single-row means. With the standardized
coordinates of :mod:`stedyn._activations` (``s1``, ``t``, ``a = sigma |w*|``,
``b = sigma |w|``, ``c = cos phi``), ``E[step] = E[step^2] = 1/2`` and

* loss::

      L = 1/8 (|v|^2 + (1^T v)^2) - (v.v*) P - 1/2 ((1^T v)(1^T v*) - v.v*) m1
          + 1/2 (|v*|^2 m2 + ((1^T v*)^2 - |v*|^2) m1^2)

  with ``m1 = E f(a t)``, ``m2 = E f(a t)^2``, ``P = E[1{s1 > 0} f(a t)]``;

* ``E[dl/dv] = dL/dv`` (Yin Lemma 4, eq. 10)::

      1/4 (v + (1^T v) 1) - (P - m1/2) v* - m1/2 (1^T v*) 1

* expected coarse gradient for ``mu'(x) = sum_k c_k 1{lo_k < x < hi_k}``::

      E[g] = sigma [ |v|^2 beta w^ + 1/2 ((1^T v)^2 - |v|^2) alpha w^
                     - (v.v*) (Gamma w^ + a D w*^)
                     - ((1^T v)(1^T v*) - v.v*) m1 alpha w^ ]

  where, with windows ``(l_k, h_k) = (lo_k, hi_k) / b`` in ``s1`` units,
  ``alpha = E[mu' s1] = sum c_k (phi(l_k) - phi(h_k))``, ``beta`` the same over
  the windows cut to ``s1 > 0``, ``D = E[mu' f'(a t)]`` and
  ``Gamma = sum c_k (phi(l_k) F(l_k) - phi(h_k) F(h_k))`` with
  ``F(e) = E[f(a t) | s1 = e]``. The last two come from Stein's lemma,
  ``E[mu'(x) f(x*) z] = sigma (Gamma w^ + a D w*^)``, which has no
  ``1/sin(phi)`` anywhere, so it is exact and smooth at angle 0 and pi
  (``Gamma + a c D = E[mu' s1 f(a t)]`` is integrated directly over narrow
  windows, where the two terms cancel);

* true gradient (the proxy ``mu' = delta``)::

      dL/dw = -(v.v*) a phi(0) / |w| * s E[f'(a s eps)] * unit(w*^ - c w^)

  (Yin eq. 7 for the binary teacher; Proper-STE eq. 44-45 for ReLU). At
  angle 0 and pi the unit vector is taken as 0: there ``dL/dw`` is 0 (smooth
  teachers) or the loss has a kink and 0 is a subgradient (binary teacher).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from . import _numerics as nm
from ._activations import _is_zero


def _geometry(w, teacher, sigma):
    phi, c, s, wh, wsh = nm.angle_cos_sin(w, teacher.w)
    nw = nm.safe_norm(w)
    a = sigma * nm.safe_norm(teacher.w)
    b = sigma * nw
    return dict(phi=phi, c=c, s=s, wh=wh, wsh=wsh, a=a, b=b, nw=nw)


def _v_sums(v, vs):
    return dict(vv=jnp.dot(v, v), sv=jnp.sum(v), svs=jnp.sum(vs), vvs=jnp.dot(v, vs), vsvs=jnp.dot(vs, vs))


def _moments(act, g):
    m1 = act.mean(g["a"])
    m2 = act.second_moment(g["a"])
    P = act.half_mean(g["a"], g["phi"], g["c"], g["s"])
    return m1, m2, P


# ---------------------------------------------------------------------------
# Scalar cores. Everything below depends on v and w only through the five
# sums ``q`` and the geometry ``g`` (angle, its cosine and sine, |w|, and the
# scales a, b); the directions are fixed combinations of v, 1, v* and w^, w*^.
# The vector functions further down and the reduced-coordinate dynamics of
# :mod:`stedyn._dynamics` both call these, so there is one implementation.


def loss_from(act, g, q):
    """Population loss from the sums ``q`` and geometry ``g``."""
    m1, m2, P = _moments(act, g)
    return (
        0.125 * (q["vv"] + q["sv"] ** 2)
        - q["vvs"] * P
        - 0.5 * (q["sv"] * q["svs"] - q["vvs"]) * m1
        + 0.5 * (q["vsvs"] * m2 + (q["svs"] ** 2 - q["vsvs"]) * m1 * m1)
    )


def grad_v_from(act, g, q):
    """``(m1, P)``: ``dL/dv = 1/4 (v + (1^T v) 1) - (P - m1/2) v* - m1/2 (1^T v*) 1``."""
    return act.mean(g["a"]), act.half_mean(g["a"], g["phi"], g["c"], g["s"])


def true_w_from(act, g, q):
    """``k``: ``dL/dw = k * unit(w*^ - c w^)`` (0 at angle 0 and pi)."""
    K = act.deriv_scaled(g["a"], g["s"])
    return -(q["vvs"] * g["a"] * nm.INV_SQRT_2PI * K / g["nw"])


def loss(v, w, teacher, sigma):
    """Population loss for Gaussian input (Yin Lemma 1; Proper-STE eq. 20)."""
    return loss_from(teacher.act, _geometry(w, teacher, sigma), _v_sums(v, teacher.v))


def _grad_v(v, vs, m1, P, q):
    return 0.25 * (v + q["sv"]) - (P - 0.5 * m1) * vs - 0.5 * m1 * q["svs"]


def true_grad(v, w, teacher, sigma):
    """Gradient of the population loss (Yin Lemma 2; Proper-STE eq. 44-45)."""
    act = teacher.act
    g = _geometry(w, teacher, sigma)
    q = _v_sums(v, teacher.v)
    m1, P = grad_v_from(act, g, q)
    dv = _grad_v(v, teacher.v, m1, P, q)
    # unit(w*^ - c w^) = (w*^ - c w^) / sin(phi), taken as 0 where sin(phi) is
    # at rounding level (parallel vectors whose components were rounded come
    # out at ~1e-17 rad): there the rejection is pure noise and normalizing it
    # would give a full-size gradient in a random direction, e.g. along +-w^.
    s = g["s"]
    pos = s > 8.0 * jnp.finfo(jnp.result_type(s)).eps
    # Normalizing by the rejection's own norm (not by s) keeps the direction a
    # unit vector to rounding even 1e-7 rad from alignment.
    rej = g["wsh"] - jnp.dot(g["wh"], g["wsh"]) * g["wh"]
    direction = jnp.where(pos, nm.safe_normalize(rej), 0.0)
    dw = true_w_from(act, g, q) * direction
    return dv, dw


def _scale_edge(e, b):
    # None (infinite) and a literal 0 stay static, so the activations can use
    # their closed forms at 0 (e.g. G(0) = (pi - phi) / (2 pi)) and empty
    # quadrature segments are dropped at trace time.
    if e is None or _is_zero(e):
        return e if e is None else 0.0
    return e / b


def _scaled_windows(ste, r, b):
    """The STE's windows in ``s1`` units: ``((l, h, weight), ...)``, None = infinite."""
    return [(_scale_edge(lo, b), _scale_edge(hi, b), wt) for lo, hi, wt in ste.windows(r)]


# Gauss-Legendre points per segment for the narrow-window moment
# E[1{l < s1 < h} s1 F(s1)] (h - l < 1/2): float32 needs far fewer than float64.
_NARROW_ORDER = {32: 8, 64: 20}


def coarse_grad(v, w, teacher, sigma, ste, r):
    """Expected coarse gradient (Yin Alg. 1 directions) for a windowed STE."""
    act = teacher.act
    g = _geometry(w, teacher, sigma)
    q = _v_sums(v, teacher.v)
    m1, P = grad_v_from(act, g, q)
    dv = _grad_v(v, teacher.v, m1, P, q)
    coef_wh, tan = coarse_w_from(act, g, q, m1, ste, r)
    dw = sigma * (coef_wh * g["wh"] - tan * (g["wsh"] - g["c"] * g["wh"]))
    return dv, dw


def _narrow_moment(act, order, l_static_zero, l, h, a, c, s):
    """``E[1{l < s1 < h} s1 F(s1)]``, ``F(e) = E[f(a t) | s1 = e]``, by Gauss-Legendre.

    One rule on ``[l, 0]`` and one on ``[0, h]`` (``F`` may jump or kink at
    0); a single segment when ``l`` is the literal 0 (``l_static_zero``, and
    then ``l`` is ignored). Elementwise in ``l, h, a, c, s`` (any common
    shape): the nodes are a Python loop (see
    :func:`stedyn._numerics.gauss_legendre_pairs`).
    """
    zero = jnp.zeros_like(h)
    if l_static_zero:
        segments = ((zero, h),)
    else:
        mid = jnp.clip(zero, l, h)
        segments = ((l, mid), (mid, h))
    ac, as_ = a * c, a * s
    total = zero
    for u, z in segments:
        half = 0.5 * (z - u)
        part = zero
        for xk, wk in nm.gauss_legendre_pairs(order):
            x = u + half * (xk + 1.0)
            part = part + wk * (nm.norm_pdf(x) * x * act.smoothed(ac * x, as_))
        total = total + half * part
    return total


def coarse_w_from(act, g, q, m1, ste, r, *, lazy=False):
    """``(k_r, k_t)``: ``E[g_ste] = sigma (k_r w^ - k_t (w*^ - c w^))``.

    ``lazy=True`` evaluates the narrow-window quadrature only when some entry
    of a vmapped batch needs it (:func:`stedyn._numerics.where_any`); the
    dynamics use it, where a whole run rarely has a narrow window. It has no
    reverse-mode derivative, so the public functions keep ``lazy=False``.
    """
    a, c, s, phi = g["a"], g["c"], g["s"], g["phi"]
    zero = jnp.zeros_like(a)

    def pdf_f(e):
        # phi(e) F(e); both vanish at infinite ends. At a literal 0 edge
        # F(0) = E[f(a s eps)] is the activation's mean at scale a s (a
        # closed form for the built-in teachers, no CDF to evaluate).
        if e is None:
            return zero
        if _is_zero(e):
            return nm.INV_SQRT_2PI * act.mean(a * s)
        return nm.norm_pdf(e) * act.smoothed(a * c * e, a * s)

    dtype = jnp.result_type(a)
    order = _NARROW_ORDER.get(jnp.finfo(dtype).bits, 20)

    # C = E[mu' f(x*) z] / sigma = lam w^ + a D (w*^ - c w^), with
    # lam = E[mu' s1 f(a t)] = Gamma + a c D (Stein). For a narrow window
    # (|w| >> r / sigma) Gamma and a c D are O(h - l) and cancel to
    # O((h - l)^3) near angle 0, so there lam is integrated directly.
    alpha = beta = lam = D = zero
    for l, h, wt in _scaled_windows(ste, r, g["b"]):
        alpha = alpha + wt * nm.norm_pdf_diff(l, h)
        lp = 0.0 if (l is None or _is_zero(l)) else jnp.maximum(l, 0.0)
        hp = None if h is None else (0.0 if _is_zero(h) else jnp.maximum(h, 0.0))
        beta = beta + wt * nm.norm_pdf_diff(lp, hp)
        d_k = act.window_deriv(l, h, a, phi, c, s)
        lam_k = pdf_f(l) - pdf_f(h) + a * c * d_k
        if l is not None and h is not None:
            narrow = (h - l) < 0.5
            lz = _is_zero(l)
            l_in = l if lz else jnp.where(narrow, l, 0.0)
            h_in = jnp.where(narrow, h, 0.25)
            moment = functools.partial(_narrow_moment, act, order, lz)
            l_arg = zero if lz else l_in
            if lazy:
                lam_k = nm.where_any(narrow, moment, lam_k, l_arg, h_in, a, c, s)
            else:
                lam_k = jnp.where(narrow, moment(l_arg, h_in, a, c, s), lam_k)
        lam = lam + wt * lam_k
        D = D + wt * d_k

    coef_wh = (
        q["vv"] * beta
        + 0.5 * (q["sv"] ** 2 - q["vv"]) * alpha
        - q["vvs"] * lam
        - (q["sv"] * q["svs"] - q["vvs"]) * m1 * alpha
    )
    return coef_wh, q["vvs"] * a * D
