"""Closed-form landscape theory for the binary and ReLU teachers.

Everything here is a formula from the papers (or derived the same way and
marked so), written for one configuration and input std ``sigma``:

* binary teacher, Yin et al. (2019): Lemma 1-2, eq. 6-9, Proposition 1,
  Lemmas 5-8;
* ReLU teacher, "Proper STE": Sec. 3.1 eq. 20-22, App. A.2 eq. 46-57, Sec.
  3.2 eq. 25-31 (with the corrections listed in ``papers/README.md``).

Both teachers share one structure. With ``A = I + 1 1^T``, ``S = 1^T v*`` and
an *effective cosine* ``c`` of the angle ``phi`` between ``w`` and ``w*``,

    L(v, phi) = 1/8 v^T A v - kappa/4 v^T (c I + 1 1^T) v* + const,

where for the binary teacher ``c = 1 - 2 phi / pi``, ``kappa = 1`` (Yin eq. 6)
and for the ReLU teacher ``c = cos(phi)``, ``kappa = 2 a / sqrt(2 pi)`` with
``a = sigma |w*|`` (Proper-STE eq. 20, 44; sigma enters through eq. 32). So
``dL/dv = 0`` gives ``v(phi) = kappa A^{-1} (c I + 1 1^T) v*`` (Yin eq. 8,
Proper-STE eq. 21) and, at that ``v``,

    L(phi) = kappa^2 / 8 [(1 - c^2) |v*|^2 + (1 - c)^2 S^2 / (m + 1)] + L_irr

with ``L_irr = 0`` (binary) or ``a^2 (pi - 2) / (4 pi) |v*|^2`` (ReLU: the
misspecification floor, the corrected Proper-STE eq. 47). ``dL/dw = 0`` needs
``phi in {0, pi}`` or ``v . v* = 0``; the latter fixes
``c = -S^2 / ((m + 1) |v*|^2 - S^2)``, which is an angle only when
``(m + 1) |v*|^2 > 2 S^2`` (Yin Prop. 1; Proper-STE item 1).

The functions taking a ``teacher`` are pure and JAX-traceable, except
:func:`stationary_points` and :func:`classify_point`, which decide discrete
labels and so need concrete values. Results keep the floating dtype of
``teacher.v`` (or of the arguments, for the clipped-ReLU helpers).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as nm
from ._model import Empirical, Gaussian, Teacher, _check_floating, _concrete

_PI = math.pi
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SUPPORTED = ("binary", "relu")

# ---------------------------------------------------------------------------
# Validation and shared pieces


def _default_float():
    return jnp.result_type(float)


def _as_scalar(name, x, dtype, *, positive=True):
    """A scalar of ``dtype``; concrete values must be finite (and > 0)."""
    if isinstance(x, Gaussian):
        x = x.sigma
    if isinstance(x, Empirical):
        raise ValueError(f"{name} must be a number or stedyn.Gaussian; the closed forms need Gaussian input")
    if isinstance(x, bool) or x is None:
        raise ValueError(f"{name} must be a real number; got {x!r}")
    xa = x if isinstance(x, jax.core.Tracer) else jnp.asarray(x)
    if xa.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {tuple(xa.shape)}")
    if not (jnp.issubdtype(xa.dtype, jnp.floating) or jnp.issubdtype(xa.dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real number; got dtype {xa.dtype}")
    cx = _concrete(xa)
    if cx is not None:
        if not np.isfinite(cx):
            raise ValueError(f"{name} must be finite; got {cx}")
        if positive and not cx > 0:
            raise ValueError(f"{name} must be > 0; got {cx}")
    return xa.astype(dtype)


def _prep(teacher, sigma):
    """Validate; return the shared quantities of the two teachers."""
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be an stedyn.Teacher; got {type(teacher).__name__}")
    kind = teacher.act.name
    if kind not in _SUPPORTED:
        raise ValueError(
            f"teacher.activation must be one of {_SUPPORTED} for the closed-form theory "
            f"(Yin et al.; Proper STE); got {kind!r}"
        )
    vs = _check_floating("teacher.v", teacher.v, 1)
    ws = _check_floating("teacher.w", teacher.w, 1)
    cv = _concrete(vs)
    if cv is not None and not np.any(cv != 0):
        raise ValueError("teacher.v must be nonzero (with v* = 0 the teacher is the zero function)")
    cw = _concrete(ws)
    if cw is not None and not np.any(cw != 0):
        raise ValueError("teacher.w must be a nonzero vector")
    dtype = vs.dtype
    ws = ws.astype(dtype)
    sigma = _as_scalar("sigma", sigma, dtype)
    m = vs.shape[0]
    S = jnp.sum(vs)
    vv = jnp.dot(vs, vs)
    a = sigma * nm.safe_norm(ws)  # the binary formulas do not use it
    kappa = jnp.ones((), dtype) if kind == "binary" else a * math.sqrt(2.0 / _PI)
    return dict(kind=kind, vs=vs, ws=ws, dtype=dtype, sigma=sigma, m=m, S=S, vv=vv, a=a, kappa=kappa)


def _c_of_angle(kind, angle):
    return 1.0 - 2.0 * angle / _PI if kind == "binary" else jnp.cos(angle)


def _angle_of_c(kind, c):
    return 0.5 * _PI * (1.0 - c) if kind == "binary" else jnp.arccos(c)


def _v_of_c(p, c):
    # kappa A^{-1} (c I + 1 1^T) v* = kappa (c v* + (1 - c) S / (m + 1) 1).
    return p["kappa"] * (c * p["vs"] + (1.0 - c) * p["S"] / (p["m"] + 1))


def _loss_of_c(p, c):
    k2 = p["kappa"] * p["kappa"]
    L = 0.125 * k2 * ((1.0 - c * c) * p["vv"] + (1.0 - c) ** 2 * p["S"] ** 2 / (p["m"] + 1))
    if p["kind"] == "relu":
        L = L + p["a"] ** 2 * (_PI - 2.0) / (4.0 * _PI) * p["vv"]
    return L


def _angle(x, p):
    return jnp.asarray(x, p["dtype"]) if not isinstance(x, jax.core.Tracer) else x.astype(p["dtype"])


def _rtol(dtype):
    # Relative tolerance for deciding degenerate (equality) cases.
    return 1e3 * float(jnp.finfo(dtype).eps)


# ---------------------------------------------------------------------------
# Stationary points (Yin Prop. 1 / Lemma 2; Proper-STE eq. 21-22)


def saddle_margin(teacher):
    """``(m + 1) |v*|^2 - 2 (1^T v*)^2``: the existence margin of the saddle.

    Positive: the middle saddle exists and the angle-pi point is a spurious
    local minimum (Yin Prop. 1, whose condition is ``(1^T v*)^2 < (m+1)/2
    |v*|^2``; Proper-STE Sec. 3.1 items 1-2). Zero (always for ``m = 1``):
    the saddle has merged into the angle-pi point, which is then a degenerate
    saddle. Negative: no middle saddle, and the angle-pi point is a saddle.
    Independent of ``sigma`` and ``w*``.

    Args:
      teacher: :class:`stedyn.Teacher` with activation ``"binary"`` or ``"relu"``.

    Returns:
      Scalar of the dtype of ``teacher.v``.
    """
    p = _prep(teacher, 1.0)
    return (p["m"] + 1) * p["vv"] - 2.0 * p["S"] ** 2


def saddle_exists(teacher):
    """Whether the middle saddle of Yin eq. 9 / Proper-STE item 1 exists.

    True iff ``(1^T v*)^2 < (m + 1)/2 |v*|^2`` strictly (Yin Prop. 1). The
    Proper-STE paper writes the non-strict inequality; at equality the saddle
    coincides with the angle-pi point (Proper-STE eq. 50), so it is not a
    separate point. Equality is detected up to a relative ``1e3 * eps``.

    Returns:
      Boolean scalar array (traceable).
    """
    p = _prep(teacher, 1.0)
    margin = (p["m"] + 1) * p["vv"] - 2.0 * p["S"] ** 2
    return margin > _rtol(p["dtype"]) * (p["m"] + 1) * p["vv"]


def optimal_v(teacher, angle, sigma=1.0):
    """The ``v`` that zeroes ``dL/dv`` at a given angle.

    ``v(phi) = kappa (I + 1 1^T)^{-1} (c I + 1 1^T) v*`` with ``c = 1 - 2
    phi/pi``, ``kappa = 1`` (binary teacher, Yin eq. 6 and 8) or ``c =
    cos(phi)``, ``kappa = 2 sigma |w*| / sqrt(2 pi)`` (ReLU teacher,
    Proper-STE eq. 21).

    Args:
      teacher: :class:`stedyn.Teacher`, activation ``"binary"`` or ``"relu"``.
      angle: angle between ``w`` and ``w*`` in ``[0, pi]`` (scalar).
      sigma: input std (number or :class:`stedyn.Gaussian`), > 0.

    Returns:
      Array of shape (m,).
    """
    p = _prep(teacher, sigma)
    return _v_of_c(p, _c_of_angle(p["kind"], _angle(angle, p)))


def global_min(teacher, sigma=1.0):
    """Global minimizer ``(v_0, 0)``.

    Binary teacher: ``v = v*`` at angle 0 (Yin Lemma 2 item 2), loss 0.
    ReLU teacher: ``v_0 = 2 sigma |w*| / sqrt(2 pi) v*`` at angle 0
    (Proper-STE Sec. 3.1 item 3). Scale-free in ``w``.

    Returns:
      ``(v, angle)``: shape (m,) and a scalar.
    """
    p = _prep(teacher, sigma)
    return p["kappa"] * p["vs"], jnp.zeros((), p["dtype"])


def spurious_min(teacher, sigma=1.0):
    """The angle-pi stationary point ``(v_pi, pi)``.

    ``v_pi = kappa (I + 1 1^T)^{-1} (1 1^T - I) v* = kappa (-I + 2/(m+1) 1 1^T) v*``
    (Yin Prop. 1 with ``kappa = 1``; Proper-STE item 2). It is a spurious
    local minimum only when :func:`saddle_exists`; otherwise a saddle (for the
    binary teacher a non-smooth one: the loss has a kink in ``w`` there).

    Returns:
      ``(v, angle)``: shape (m,) and the scalar pi.
    """
    p = _prep(teacher, sigma)
    return _v_of_c(p, -jnp.ones((), p["dtype"])), jnp.full((), _PI, p["dtype"])


def saddle_point(teacher, sigma=1.0):
    """The middle saddle ``(v_bar, phi_bar)`` with ``v_bar . v* = 0``.

    Effective cosine ``c = -S^2 / ((m + 1) |v*|^2 - S^2)``, ``S = 1^T v*``:

    * binary teacher (Yin Prop. 1, eq. 9): ``phi_bar = pi/2 (m+1)|v*|^2 /
      ((m+1)|v*|^2 - S^2)``, ``v_bar = (I + 1 1^T)^{-1} (c I + 1 1^T) v*``;
    * ReLU teacher (Proper-STE Sec. 3.1 item 1): ``phi_bar = arccos(c)``,
      ``v_bar = 2 sigma |w*| / sqrt(2 pi) (c I + (1 - c)/(m+1) 1 1^T) v*``.

    Args:
      teacher: :class:`stedyn.Teacher`, activation ``"binary"`` or ``"relu"``.
      sigma: input std (number or :class:`stedyn.Gaussian`).

    Returns:
      ``(v, angle, exists)``. When ``exists`` is False (see
      :func:`saddle_exists`) ``c`` is clipped to -1, so ``(v, angle)`` is the
      angle-pi point and carries no separate meaning.
    """
    p = _prep(teacher, sigma)
    big = (p["m"] + 1) * p["vv"]
    c = -p["S"] ** 2 / (big - p["S"] ** 2)  # denominator >= |v*|^2 > 0
    c = jnp.maximum(c, -1.0)
    exists = big - 2.0 * p["S"] ** 2 > _rtol(p["dtype"]) * big
    return _v_of_c(p, c), _angle_of_c(p["kind"], c), exists


def stationary_loss(teacher, angle, sigma=1.0):
    """Population loss at ``(optimal_v(angle), angle)``.

    ``L = kappa^2/8 [(1 - c^2)|v*|^2 + (1 - c)^2 (1^T v*)^2 / (m+1)] + L_irr``
    (Yin Lemma 1 at ``dL/dv = 0``; Proper-STE eq. 46 with its prefactor
    ``1/(2 pi)`` of the last term corrected to ``1/(4 pi)``, as in eq. 20). At
    the three points this gives: binary ``0``, ``2 S^2 / (4 (m+1))`` and the
    saddle value; ReLU ``a^2 (pi - 2)/(4 pi) |v*|^2`` (eq. 47 corrected: ``v*^T
    v*``, not ``v*^T v``), eq. 48 and eq. 49, with ``a = sigma |w*|``.

    Returns:
      Scalar of the dtype of ``teacher.v``.
    """
    p = _prep(teacher, sigma)
    return _loss_of_c(p, _c_of_angle(p["kind"], _angle(angle, p)))


# ---------------------------------------------------------------------------
# Second-order classification (Yin Prop. 1 proof; Proper-STE App. A.2)


def loss_hessian(teacher, v, angle, sigma=1.0):
    """Hessian of the population loss in the coordinates ``(v, angle)``.

    * ReLU teacher (Proper-STE eq. 52, with ``|w*| -> sigma |w*|``)::

          [[A/4,             b sin(phi) v*],
           [b sin(phi) v*^T, b (v.v*) cos(phi)]],   b = a / (2 sqrt(2 pi))

      valid at every angle (the loss depends on ``w`` through ``cos phi``,
      smooth in ``w`` also at 0 and pi, where ``phi`` is read as a signed
      in-plane angle).
    * binary teacher (Yin Prop. 1 proof, scaled from ``f~`` to ``L``)::

          [[A/4, v*/(2 pi)], [v*^T/(2 pi), 0]]

      valid for ``phi in (0, pi)``; at 0 and pi the loss has a kink in ``w``
      (first derivative ``(v.v*)/(2 pi)`` in ``phi``), see :func:`classify_point`.

    In ``w`` space at ``|w| = rho`` the angle row/column scales by ``1/rho``;
    there is one more zero eigenvalue along ``w`` (scale invariance) and, at
    a stationary point, ``n - 2`` eigenvalues ``cot(phi) dL/dphi / rho^2``
    out of the ``(w, w*)`` plane: 0 at the middle saddle, the angle-angle
    entry over ``rho^2`` at 0 and pi (ReLU teacher).

    Args:
      teacher: :class:`stedyn.Teacher`, activation ``"binary"`` or ``"relu"``.
      v: second-layer weights, shape (m,).
      angle: scalar angle in ``[0, pi]``.
      sigma: input std.

    Returns:
      Array of shape (m + 1, m + 1).
    """
    p = _prep(teacher, sigma)
    v = _check_floating("v", v, 1)
    if v.shape != p["vs"].shape:
        raise ValueError(f"v must have shape {p['vs'].shape} like teacher.v; got {v.shape}")
    v = v.astype(p["dtype"])
    phi = _angle(angle, p)
    m = p["m"]
    A = 0.25 * (jnp.eye(m, dtype=p["dtype"]) + jnp.ones((m, m), p["dtype"]))
    if p["kind"] == "relu":
        b = p["a"] / (2.0 * _SQRT_2PI)
        cross = b * jnp.sin(phi) * p["vs"]
        corner = b * jnp.dot(v, p["vs"]) * jnp.cos(phi)
    else:
        cross = p["vs"] / (2.0 * _PI)
        corner = jnp.zeros((), p["dtype"])
    top = jnp.concatenate([A, cross[:, None]], axis=1)
    bottom = jnp.concatenate([cross, corner[None]])[None, :]
    return jnp.concatenate([top, bottom], axis=0)


def _angle_grad(p, v, phi):
    if p["kind"] == "relu":
        return p["a"] / (2.0 * _SQRT_2PI) * jnp.sin(phi) * jnp.dot(v, p["vs"])
    return jnp.dot(v, p["vs"]) / (2.0 * _PI)


def classify_point(teacher, v, angle, sigma=1.0, *, rtol=None):
    """Classify a point of the population loss as in Proper-STE App. A.2.

    First checks stationarity (``dL/dv = 0`` and ``dL/dphi = 0``, or for the
    binary teacher at angle 0 / pi the one-sided condition), then the sign
    pattern of the eigenvalues of :func:`loss_hessian` (eq. 53-57):

    * ``"min"``: positive definite (ReLU teacher), or for the binary teacher's
      kinks a positive one-sided slope into the interior (``v.v* > 0`` at 0,
      ``< 0`` at pi; Yin Prop. 1 proof) with ``A/4`` positive definite;
    * ``"max"``: negative definite (never happens here);
    * ``"saddle"``: eigenvalues (or one-sided slope and ``A/4``) of both signs;
    * ``"degenerate"``: semi-definite with a zero eigenvalue (e.g. the merged
      saddle ``(m+1)|v*|^2 = 2 (1^T v*)^2``);
    * ``"not_stationary"``: the gradient does not vanish.

    Needs concrete values (not traceable). Global vs. spurious is a matter of
    the loss value: compare with :func:`stationary_loss`.

    Args:
      teacher, v, angle, sigma: as in :func:`loss_hessian`.
      rtol: relative tolerance for "zero" (default ``1e3 * eps`` of the dtype),
        relative to the natural scale of each quantity (``kappa |v*|`` for
        ``dL/dv``, ``b kappa |v*|^2`` for ``dL/dphi``, ``b`` the angle factor).

    Returns:
      One of the strings above.
    """
    p = _prep(teacher, sigma)
    H = np.asarray(loss_hessian(teacher, v, angle, sigma), dtype=np.float64)
    v = jnp.asarray(v).astype(p["dtype"])
    phi = _angle(angle, p)
    tol = _rtol(p["dtype"]) if rtol is None else float(rtol)
    # Natural scales: |dL/dv| ~ kappa |v*| (m+1)/4; dL/dphi ~ b kappa |v*|^2.
    nvs = float(jnp.sqrt(p["vv"]))
    kap = float(p["kappa"])
    b = float(p["a"]) / (2.0 * _SQRT_2PI) if p["kind"] == "relu" else 1.0 / (2.0 * _PI)
    dv = 0.25 * (v + jnp.sum(v)) - 0.25 * p["kappa"] * (_c_of_angle(p["kind"], phi) * p["vs"] + p["S"])
    if float(jnp.max(jnp.abs(dv))) > tol * kap * nvs * (p["m"] + 1):
        return "not_stationary"
    phi_f = float(phi)
    slope = float(_angle_grad(p, v, phi))
    slope_scale = b * kap * nvs * nvs
    if p["kind"] == "binary" and (phi_f <= 0.0 or phi_f >= _PI):
        # Kink: L(phi) = L + slope phi near 0, L - slope (pi - phi) near pi, for
        # moves into the interior; A/4 > 0 in v.
        inward = slope if phi_f <= 0.0 else -slope
        if abs(inward) <= tol * slope_scale:
            return "degenerate"
        return "min" if inward > 0 else "saddle"
    if abs(slope) > tol * slope_scale:
        return "not_stationary"
    eig = np.linalg.eigvalsh(H)
    zero = tol * max(0.25 * (p["m"] + 1), slope_scale, b * nvs)
    pos, neg = int(np.sum(eig > zero)), int(np.sum(eig < -zero))
    if pos and neg:
        return "saddle"
    if pos == eig.size:
        return "min"
    if neg == eig.size:
        return "max"
    return "degenerate"


# ---------------------------------------------------------------------------
# Coarse / true gradient correlations (Yin Lemma 5 and 8)


def coarse_true_correlation(v, w, teacher, sigma=1.0, ste="relu", r=1.0):
    """``<E[g_ste], dL/dw>``: expected coarse gradient against the true one.

    Binary teacher (Yin et al.; the coarse gradient carries a factor sigma,
    the true gradient does not)::

        relu     (Lemma 5): sigma sin(phi) (v.v*)^2 / (2 (2 pi)^{3/2} |w|)
        identity (Lemma 8): sigma sin(phi) (v.v*)^2 / ((2 pi)^{3/2} |w|)
        crelu    (derived): sigma sin(phi) (v.v*)^2 (2 Phi(r / (sigma |w| sin phi)) - 1)
                            / (2 (2 pi)^{3/2} |w|)

    ReLU teacher (derived here the same way from Proper-STE eq. 25, 26, 45;
    not stated in the paper), ``a = sigma |w*|``::

        relu:     sigma a^2 (pi - phi) sin(phi)^2 (v.v*)^2 / (4 pi sqrt(2 pi) |w|)
        identity: sigma a^2 sin(phi)^2 (v.v*)^2 / (4 sqrt(2 pi) |w|)

    All are ``>= 0``: the negative coarse gradient is never an ascent
    direction in ``w``. Only the ``w*`` component of ``E[g]`` matters, since
    ``dL/dw`` is orthogonal to ``w``. At angle 0 and pi both sides are 0.

    Args:
      v: shape (m,). w: shape (n,), nonzero.
      teacher: :class:`stedyn.Teacher`, ``"binary"`` or ``"relu"``.
      sigma: input std. ste: ``"relu"``, ``"identity"`` or (binary teacher
        only) ``"crelu"``. r: clip value for ``"crelu"``, > 0.

    Returns:
      Scalar.
    """
    p = _prep(teacher, sigma)
    v = _check_floating("v", v, 1)
    w = _check_floating("w", w, 1)
    if v.shape != p["vs"].shape:
        raise ValueError(f"v must have shape {p['vs'].shape} like teacher.v; got {v.shape}")
    if w.shape != p["ws"].shape:
        raise ValueError(f"w must have shape {p['ws'].shape} like teacher.w; got {w.shape}")
    cw = _concrete(w)
    if cw is not None and not np.any(cw != 0):
        raise ValueError("w must be a nonzero vector (the angle to w* is undefined at 0)")
    allowed = ("relu", "identity", "crelu") if p["kind"] == "binary" else ("relu", "identity")
    if ste not in allowed:
        raise ValueError(
            f"ste must be one of {allowed} for a {p['kind']} teacher (closed forms); got {ste!r}"
        )
    v = v.astype(p["dtype"])
    w = w.astype(p["dtype"])
    phi, _, s, _, _ = nm.angle_cos_sin(w, p["ws"])
    nw = nm.safe_norm(w)
    q2 = jnp.dot(v, p["vs"]) ** 2
    sig = p["sigma"]
    if p["kind"] == "binary":
        base = sig * s * q2 / ((2.0 * _PI) ** 1.5 * nw)
        if ste == "identity":
            return base
        if ste == "relu":
            return 0.5 * base
        rr = _as_scalar("r", r, p["dtype"])
        # P(0 < s1 < t | teacher pre-activation 0) = Phi(t / sin) - 1/2.
        frac = 2.0 * nm.cdf_of_ratio(rr / (sig * nw), s) - 1.0
        return 0.5 * base * frac
    a2 = p["a"] ** 2
    base = sig * a2 * s * s * q2 / (4.0 * _SQRT_2PI * nw)
    if ste == "identity":
        return base
    return base * (_PI - phi) / _PI


# ---------------------------------------------------------------------------
# Clipped-ReLU STE: lambda(|w|) and the scale it picks (Proper-STE eq. 29-31)

_LAM_TERMS = 20  # enough for t <= 1: the k-th terms fall like 2^-k / k!
# P(y) = sum_k (-1/2)^k y^k / (k! (2k + 3)):  int_0^t x^2 e^{-x^2/2} dx = t^3 P(t^2).
_P_COEF = tuple((-0.5) ** k / (math.factorial(k) * (2 * k + 3)) for k in range(_LAM_TERMS))
# R(u) = sum_k (-u)^k / (k + 1)! = (1 - e^{-u}) / u.
_R_COEF = tuple((-1.0) ** k / math.factorial(k + 1) for k in range(_LAM_TERMS))
_SERIES_MAX = 1.0
_LAM_T_MAX = 64.0  # beyond, lambda = pi to every digit


def _horner(coefs, y):
    acc = jnp.zeros_like(y) + coefs[-1]
    for c in reversed(coefs[:-1]):
        acc = acc * y + c
    return acc


def _lambda_of_t(t):
    """``lambda`` of eq. 30 as a function of ``t = r / (sigma |w|) >= 0``.

    ``lambda(t) = sqrt(2 pi) int_0^t x^2 phi(x) dx / int_0^t x phi(x) dx``:
    the closed form ``(pi erf(t/sqrt 2) - sqrt(2 pi) t e^{-t^2/2}) / (1 -
    e^{-t^2/2})`` cancels to ``0/0`` as ``t -> 0`` (relative error ~ eps /
    t^2: 1e-6 at t = 1e-5, every digit by t = 1e-8 in float64), so for ``t <=
    1`` both integrals come from their Taylor series (``lambda ~ 2 sqrt(2 pi)
    t / 3``). Double-where keeps the unused branch finite for gradients.
    """
    small = t <= _SERIES_MAX
    ts = jnp.where(small, t, 0.0)
    series = 2.0 * _SQRT_2PI * ts * _horner(_P_COEF, ts * ts) / _horner(_R_COEF, 0.5 * ts * ts)
    tc = jnp.clip(jnp.where(small, 2.0, t), _SERIES_MAX, _LAM_T_MAX)
    e = jnp.exp(-0.5 * tc * tc)
    num = _PI * jax.scipy.special.erf(tc * nm.INV_SQRT_2) - _SQRT_2PI * tc * e
    closed = num / (-jnp.expm1(-0.5 * tc * tc))
    return jnp.where(small, series, closed)


def _crelu_args(w_norm, r, sigma):
    args = [x for x in (w_norm, r, sigma) if not isinstance(x, Gaussian)]
    if isinstance(sigma, Gaussian):
        args.append(sigma.sigma)
    dtype = jnp.result_type(*args)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = _default_float()
    return dtype


def crelu_lambda(w_norm, r=1.0, sigma=1.0):
    """``lambda(|w|)`` of Proper-STE eq. 30 (clipped-ReLU STE at angle 0).

    With ``t = r / (sigma |w|)``::

        lambda = (pi - t e^{-t^2/2} sqrt(2 pi) - pi erfc(t / sqrt 2)) / (1 - e^{-t^2/2})

    At angle 0 the expected clipped-ReLU coarse gradient (eq. 29) is
    ``sigma (1 - e^{-t^2/2}) / (2 sqrt(2 pi)) w*^ v^T [A v - kappa ((lambda - 1) I
    + 1 1^T) v*]``, which vanishes at ``v_0`` iff ``lambda = 2``.
    ``lambda`` increases strictly from 0 to pi as ``t`` goes from 0 to
    infinity (it is ``sqrt(2 pi)`` times the mean of the density ``x phi(x)``
    on ``[0, t]``), so as a function of ``|w|`` it *decreases* from pi
    (``|w| -> 0``) to 0 (``|w| -> inf``).

    Args:
      w_norm: ``|w| > 0`` (scalar or array).
      r: clip value, > 0. sigma: input std, > 0 (number or Gaussian).

    Returns:
      Array like ``w_norm``, in the floating dtype of the arguments.
    """
    dtype = _crelu_args(w_norm, r, sigma)
    wn = w_norm if isinstance(w_norm, jax.core.Tracer) else jnp.asarray(w_norm)
    if not (jnp.issubdtype(wn.dtype, jnp.floating) or jnp.issubdtype(wn.dtype, jnp.integer)):
        raise ValueError(f"w_norm must be real; got dtype {wn.dtype}")
    cw = _concrete(wn)
    if cw is not None and not (np.all(np.isfinite(cw)) and np.all(cw > 0)):
        raise ValueError(f"w_norm must be finite and > 0; got {cw}")
    wn = wn.astype(dtype)
    r = _as_scalar("r", r, dtype)
    sigma = _as_scalar("sigma", sigma, dtype)
    return _lambda_of_t(r / (sigma * wn))


def _lambda_of_t_np(t):
    """float64 NumPy/math twin of :func:`_lambda_of_t` (same branches)."""
    if t <= _SERIES_MAX:
        y = t * t
        num = sum(c * y**k for k, c in enumerate(_P_COEF))
        den = sum(c * (0.5 * y) ** k for k, c in enumerate(_R_COEF))
        return 2.0 * _SQRT_2PI * t * num / den
    t = min(t, _LAM_T_MAX)
    return (_PI * math.erf(t * nm.INV_SQRT_2) - _SQRT_2PI * t * math.exp(-0.5 * t * t)) / (
        -math.expm1(-0.5 * t * t)
    )


def _bisect_t0():
    # lambda is strictly increasing in t: lambda(0) = 0 < 2 < lambda(8) ~ pi.
    lo, hi = 0.0, 8.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _lambda_of_t_np(mid) < 2.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


_T0 = _bisect_t0()


def crelu_t0(dtype=None):
    """The root ``t0`` of ``lambda(t) = 2`` (``t = r / (sigma |w|)``).

    A universal constant, ``t0 = 1.3102684802054...``: found once by bisection
    in float64 on ``[0, 8]`` (``lambda(0) = 0 < 2 < lambda(8) ~ pi``; lambda
    is strictly increasing, see :func:`crelu_lambda`) until the bracket
    collapses to adjacent floats, then rounded to ``dtype`` (default: the
    default float). The paper's ``c0`` (``w0 = r c0 / sigma``) is
    ``1 / t0 = 0.76320...``.
    """
    dtype = _default_float() if dtype is None else jnp.dtype(dtype)
    return jnp.asarray(_T0, dtype)


def crelu_w0(r=1.0, sigma=1.0):
    """The scale ``w0`` where ``lambda(w0) = 2`` (Proper-STE Sec. 3.2.3 item 3).

    At ``(v_0, angle 0, |w| = w0)`` the expected clipped-ReLU coarse gradient
    vanishes: it is the only scale at which the clipped-ReLU STE has the
    (scale-degenerate) global minimum of the ReLU teacher as a fixed point.
    ``w0 = r / (sigma t0)`` with ``t0`` from :func:`crelu_t0`; unique since
    lambda is strictly monotone.

    Args:
      r: clip value, > 0. sigma: input std, > 0 (number or Gaussian).

    Returns:
      Scalar in the floating dtype of the arguments.
    """
    dtype = _crelu_args(r, r, sigma)
    r = _as_scalar("r", r, dtype)
    sigma = _as_scalar("sigma", sigma, dtype)
    return r / (sigma * crelu_t0(dtype))


def crelu_C0(w_norm, r=1.0, sigma=1.0, w_star_norm=1.0):
    """``C(|w|, 0)`` of Proper-STE eq. 27 / 110 (closed form at angle 0).

    ``C = |w*| / (2 pi) (pi - t e^{-t^2/2} sqrt(2 pi) - pi erfc(t / sqrt 2))``
    ``= |w*| (Phi(t) - 1/2 - t phi(t))`` with ``t = r / (sigma |w|)`` (eq. 32
    rule; the gradient of eq. 27 carries a further ``sigma^2``). Computed as
    ``|w*| (1 - e^{-t^2/2}) lambda(t) / (2 pi)`` to keep digits at small ``t``.

    Returns:
      Array like ``w_norm``.
    """
    lam = crelu_lambda(w_norm, r, sigma)
    dtype = lam.dtype
    r = _as_scalar("r", r, dtype)
    sigma = _as_scalar("sigma", sigma, dtype)
    wsn = _as_scalar("w_star_norm", w_star_norm, dtype)
    wn = (w_norm if isinstance(w_norm, jax.core.Tracer) else jnp.asarray(w_norm)).astype(dtype)
    t = r / (sigma * wn)
    return wsn * (-jnp.expm1(-0.5 * t * t)) * lam / (2.0 * _PI)


# ---------------------------------------------------------------------------
# Points as data, for distances along a trajectory


@dataclasses.dataclass(frozen=True)
class StationaryPoint:
    """A known stationary point, described in scale-free coordinates.

    Attributes:
      name: ``"v_0"`` (angle 0), ``"v_pi"`` (angle pi) or ``"v_bar"`` (middle
        saddle), the papers' notation.
      kind: ``"global_min"``, ``"spurious_min"`` or ``"saddle"``.
      v: second-layer weights, shape (m,).
      angle: angle between ``w`` and ``w*`` (scalar).
      loss: population loss there (scalar).
      w_norm: ``|w|`` where the point sits, or ``None`` when any ``|w| > 0``
        works (the loss and the identity/ReLU STEs are scale invariant).
      ste_fixed: whether the expected coarse gradient of the STE asked for in
        :func:`stationary_points` also vanishes there (``None`` if no STE).
    """

    name: str
    kind: str
    v: Any
    angle: Any
    loss: Any
    w_norm: Optional[Any] = None
    ste_fixed: Optional[bool] = None


jax.tree_util.register_dataclass(
    StationaryPoint, data_fields=["v", "angle", "loss", "w_norm"], meta_fields=["name", "kind", "ste_fixed"]
)


def _identity_pi_residual(p):
    """``|E[g_id]| / sigma`` at ``(v_pi, pi)`` and its natural scale."""
    v = _v_of_c(p, -jnp.ones((), p["dtype"]))
    vv = jnp.dot(v, v)
    vvs = jnp.dot(v, p["vs"])
    if p["kind"] == "binary":
        # Yin eq. 14 at w^ = -w*^:  -(|v|^2 + v.v*) w*^ / sqrt(2 pi); Lemma 7.
        res = jnp.abs(vv + vvs) / _SQRT_2PI
        scale = p["vv"] / _SQRT_2PI
    else:
        # Proper-STE eq. 25 at w^ = -w*^: -(|v|^2 / sqrt(2 pi) + a/2 v.v*) w*^.
        res = jnp.abs(vv / _SQRT_2PI + 0.5 * p["a"] * vvs)
        scale = p["kappa"] ** 2 * p["vv"] / _SQRT_2PI + 0.5 * p["a"] * p["kappa"] * p["vv"]
    return float(res), float(scale)


def _ste_fixed(p, name, ste):
    """Whether ``E[dl/dv]`` and ``E[g_ste]`` both vanish at the named point.

    binary teacher: ReLU STE at all three (Yin Lemma 6); clipped ReLU at all
    three for every ``|w|`` (derived: at the saddle and at pi it is ``(1 -
    e^{-t^2/2})`` times the ReLU STE, at angle 0 it is ``sigma (phi(0) -
    phi(t))/2 v^T A (v - v*) w*^``); identity only at ``v_0`` and, iff ``(m -
    1)(1^T v*)^2 = 0``, at ``v_pi`` (Yin Lemma 7).
    ReLU teacher: ReLU STE at ``v_bar`` and ``v_pi`` (Proper-STE eq. 26);
    clipped ReLU at those for every ``|w|`` (eq. 28) and at ``v_0`` for
    ``|w| = w0`` (eq. 29-31); identity at none (eq. 25), except at ``v_pi`` in
    the measure-zero case ``|v_pi|^2 / sqrt(2 pi) = -a/2 v_pi.v*`` (e.g. every
    ``m = 1`` teacher, where ``v_pi = 0``).
    """
    if ste in ("relu", "crelu"):
        return not (p["kind"] == "relu" and name == "v_0" and ste == "relu")
    # identity
    if name == "v_0":
        return p["kind"] == "binary"
    if name == "v_bar":
        return False
    res, scale = _identity_pi_residual(p)
    return res <= _rtol(p["dtype"]) * scale


def stationary_points(teacher, sigma=1.0, *, ste=None, r=1.0):
    """The known stationary points of the population loss, labeled.

    Binary teacher: Yin Lemma 2 item 2 and Prop. 1. ReLU teacher: Proper-STE
    Sec. 3.1 and App. A.2. Always ``v_0`` (global min) and ``v_pi``
    (``"spurious_min"`` if :func:`saddle_exists`, else ``"saddle"``; for the
    binary teacher a point of non-differentiability where 0 is a subgradient);
    ``v_bar`` (``"saddle"``) only if it exists. All are scale-free in ``w``.

    With ``ste`` given, each point also says whether it is a fixed point of
    the coarse-gradient dynamics of that STE (``ste_fixed``; see the papers'
    Lemma 6 / eq. 25-31). For the clipped-ReLU STE and the ReLU teacher the
    global minimum is a fixed point only at ``|w| = w0(r, sigma)``, which is
    then stored in ``w_norm``.

    Not traceable (the list and labels depend on the values).

    Args:
      teacher: :class:`stedyn.Teacher` with activation ``"binary"`` or ``"relu"``.
      sigma: input std (number or :class:`stedyn.Gaussian`).
      ste: ``None``, ``"identity"``, ``"relu"`` or ``"crelu"``.
      r: clip value for ``"crelu"``, > 0.

    Returns:
      Tuple of :class:`StationaryPoint`, ordered ``v_0``, ``v_bar`` (if any),
      ``v_pi``.
    """
    p = _prep(teacher, sigma)
    if ste not in (None, "identity", "relu", "crelu"):
        raise ValueError(f"ste must be None, 'identity', 'relu' or 'crelu'; got {ste!r}")
    if _concrete(p["vs"]) is None or _concrete(p["sigma"]) is None:
        raise ValueError("stationary_points needs concrete teacher.v and sigma (it is not traceable)")
    exists = bool(saddle_exists(teacher))
    v0, a0 = global_min(teacher, sigma)
    vpi, api = spurious_min(teacher, sigma)
    pts = [("v_0", "global_min", v0, a0)]
    if exists:
        vb, ab, _ = saddle_point(teacher, sigma)
        pts.append(("v_bar", "saddle", vb, ab))
    pts.append(("v_pi", "spurious_min" if exists else "saddle", vpi, api))
    out = []
    for name, kind, v, ang in pts:
        loss = _loss_of_c(p, _c_of_angle(p["kind"], ang))
        w_norm = None
        fixed = None
        if ste is not None:
            fixed = _ste_fixed(p, name, ste)
            if ste == "crelu" and p["kind"] == "relu" and name == "v_0":
                w_norm = crelu_w0(r, p["sigma"])
        out.append(StationaryPoint(name, kind, v, ang, loss, w_norm, fixed))
    return tuple(out)


class PointDistance(NamedTuple):
    """Distance from ``(v, w)`` to a :class:`StationaryPoint`, by component.

    Attributes:
      v: ``|v - point.v|``.
      angle: ``|angle(w, w*) - point.angle|`` in radians.
      log_scale: ``|log(|w| / point.w_norm)|``, or 0 when the point is
        scale-free (``w_norm is None``).
    """

    v: Any
    angle: Any
    log_scale: Any


def distance_to_point(v, w, teacher, point):
    """Component distances from ``(v, w)`` to ``point`` (traceable).

    The loss is scale invariant in ``w``, so a scale-free point is a ray;
    the angle (Kahan's stable form) measures the distance to it.

    Returns:
      :class:`PointDistance`.
    """
    if not isinstance(point, StationaryPoint):
        raise ValueError(f"point must be an stedyn StationaryPoint; got {type(point).__name__}")
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be an stedyn.Teacher; got {type(teacher).__name__}")
    v = _check_floating("v", v, 1)
    w = _check_floating("w", w, 1)
    ws = _check_floating("teacher.w", teacher.w, 1).astype(w.dtype)
    if w.shape != ws.shape:
        raise ValueError(f"w must have shape {ws.shape} like teacher.w; got {w.shape}")
    pv = jnp.asarray(point.v).astype(v.dtype)
    if pv.shape != v.shape:
        raise ValueError(f"v must have shape {pv.shape} like point.v; got {v.shape}")
    phi, _, _, _, _ = nm.angle_cos_sin(w, ws)
    dv = nm.safe_norm(v - pv)
    dphi = jnp.abs(phi - jnp.asarray(point.angle).astype(w.dtype))
    if point.w_norm is None:
        dlog = jnp.zeros((), w.dtype)
    else:
        dlog = jnp.abs(jnp.log(nm.safe_norm(w) / jnp.asarray(point.w_norm).astype(w.dtype)))
    return PointDistance(dv, dphi, dlog)


def w_at_angle(w_star, angle, norm=1.0, perp=None):
    """A filter ``w`` at a given angle to ``w_star`` and of a given norm.

    ``w = norm (cos(angle) w*^ + sin(angle) e)`` with ``e`` a unit vector
    orthogonal to ``w*``: ``perp`` projected and normalized, or by default the
    standard basis vector least aligned with ``w*``, orthogonalized. At angle
    0 and pi the sine is snapped to 0 (``sin(pi)`` is 1.2e-16 in floating
    point), so ``w`` is exactly ``+- norm w*^``: this matters for the binary
    teacher, whose true gradient has a kink there. For ``n = 1`` only 0 and
    pi are possible.

    Args:
      w_star: shape (n,), nonzero. angle: scalar in [0, pi]. norm: > 0.
      perp: optional shape-(n,) direction not parallel to ``w_star``.

    Returns:
      Array of shape (n,) and the dtype of ``w_star``.
    """
    ws = _check_floating("w_star", w_star, 1)
    cw = _concrete(ws)
    if cw is not None and not np.any(cw != 0):
        raise ValueError("w_star must be a nonzero vector")
    dtype = ws.dtype
    norm = _as_scalar("norm", norm, dtype)
    ang = _as_scalar("angle", angle, dtype, positive=False)
    ca = _concrete(ang)
    if ca is not None and not (0.0 <= ca <= _PI + 1e-12):
        raise ValueError(f"angle must lie in [0, pi]; got {ca}")
    n = ws.shape[0]
    wh = ws / nm.safe_norm(ws)
    if n == 1:
        e = jnp.zeros_like(wh)
    else:
        if perp is None:
            k = jnp.argmin(jnp.abs(wh))
            base = jnp.zeros_like(wh).at[k].set(1.0)
        else:
            base = _check_floating("perp", perp, 1).astype(dtype)
            if base.shape != ws.shape:
                raise ValueError(f"perp must have shape {ws.shape}; got {base.shape}")
        e = base - jnp.dot(base, wh) * wh
        e = e - jnp.dot(e, wh) * wh
        ne = nm.safe_norm(e)
        cn, cb = _concrete(ne), _concrete(nm.safe_norm(base))
        if cn is not None and not cn > _rtol(dtype) * cb:
            raise ValueError("perp must be nonzero and not parallel to w_star")
        e = e / ne
    c = jnp.cos(ang)
    s = jnp.sin(ang)
    tiny = 4.0 * float(jnp.finfo(dtype).eps)
    s = jnp.where(jnp.abs(s) <= tiny, 0.0, s)
    c = jnp.where(jnp.abs(s) <= tiny, jnp.sign(c), c)
    return norm * (c * wh + s * e)
