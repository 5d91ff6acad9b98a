"""Baselines for batched Algorithm 1: what a user writes without stedyn.

All of them step the exact Gaussian population dynamics of Yin et al.
Algorithm 1 (``v <- v - lr E[dl/dv]``, ``w <- w - lr E[g_ste]``) with the same
closed forms as :mod:`stedyn._gaussian` and :mod:`stedyn._activations`
(teachers ``"relu"`` and ``"binary"``; STEs ``"identity"``, ``"relu"`` and
``"crelu"``), and record the population loss, ``|w|`` and the angle to ``w*``
at the same steps as :func:`stedyn.run` (``0, k, 2k, ...`` and the last):

* :func:`run_loop`: a Python loop over configurations and steps, NumPy
  vectors of length m and n, scalar math in Python floats (``math``); the
  narrow-window quadrature and Owen's T only where their branch is taken.
  This is what a paper's authors typically write.
* :func:`run_batch`: the same formulas hand-vectorized over a batch, arrays
  of shape ``(B, m)`` and ``(B, n)``; loop invariants (``w*^``, ``|w*|``,
  sums of ``v*``) hoisted out of the step loop, and the narrow-window
  quadrature evaluated only on the configurations that need it (a boolean
  mask), which NumPy can do and a vmapped JAX program cannot. This is what a
  careful user writes without JAX.

Both work in the dtype of their inputs (the loop's scalar math is Python
float64 whatever the dtype; its vectors keep the dtype). They differ from
stedyn in what they leave out, each in the baseline's favour: no per-step
finiteness / range checks, no outcome classification, and three recorded
metrics instead of seven. They step the vectors themselves (``O(m + n)`` per
step), as the papers' formulas are written; stedyn's reduced coordinates
(5 scalars per configuration) are part of what is measured.

The normal CDF needs ``erfc``: :func:`scipy.special.erfc` when SciPy is
installed (the fastest vectorized one a NumPy user has), otherwise
``math.erfc`` mapped over the array (slow; :data:`ERFC_SOURCE` says which, and
the suite records it). Owen's T uses the same Gauss-Legendre ratio form as
:func:`stedyn._numerics.owens_t_ratio`, with the same node counts.

:func:`mixture_mc_runner` is the Monte-Carlo baseline for Gaussian-mixture
input (the Proper-STE paper's Sec. 4 method): every step draws a fresh
10,000-sample batch and takes the sample-mean coarse gradient, jitted in JAX.
"""

from __future__ import annotations

import math

import numpy as np

TEACHERS = ("relu", "binary")
STES = ("identity", "relu", "crelu")

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
# Gauss-Legendre points for Owen's T and for the narrow-window moment, as in
# stedyn._numerics._OWEN_ORDER and stedyn._gaussian._NARROW_ORDER.
_ORDER = {4: 8, 8: 20}

try:  # the fastest vectorized erfc a NumPy user has
    from scipy.special import erfc as _erfc

    ERFC_SOURCE = "scipy.special.erfc"
except ImportError:  # pragma: no cover - SciPy is a test extra, not a dependency
    _erfc_obj = np.frompyfunc(math.erfc, 1, 1)

    def _erfc(x):
        return _erfc_obj(x).astype(np.result_type(x))

    ERFC_SOURCE = "math.erfc via np.frompyfunc (SciPy not installed; slower)"


def _check(teacher, ste):
    if teacher not in TEACHERS:
        raise ValueError(f"baseline teacher must be one of {TEACHERS}; got {teacher!r}")
    if ste not in STES:
        raise ValueError(f"baseline ste must be one of {STES}; got {ste!r}")


def _nodes(dtype, value_dtype=None):
    """Gauss-Legendre rule sized for ``dtype``, with values in ``value_dtype`` (default the same)."""
    x, w = np.polynomial.legendre.leggauss(_ORDER[np.dtype(dtype).itemsize])
    value_dtype = dtype if value_dtype is None else value_dtype
    return x.astype(value_dtype), w.astype(value_dtype)


def record_steps(steps, k):
    """The steps :func:`stedyn.run` records: ``0, k, 2k, ...`` and the last."""
    s = list(range(0, steps + 1, k))
    if s[-1] != steps:
        s.append(steps)
    return np.asarray(s)


# ---------------------------------------------------------------------------
# Vectorized NumPy (arrays over the batch)


def _cdf(x):
    return 0.5 * _erfc(-x * _INV_SQRT_2)


def _pdf(x):
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _tiny(x):
    return np.finfo(x.dtype).tiny * 1e4


def _cdf_ratio(num, den):
    """``Phi(num / den)``, the step ``1{num > 0}`` where ``den`` is ~0."""
    small = den <= _tiny(den)
    val = _cdf(np.where(small, 0.0, num) / np.where(small, 1.0, den))
    step = np.where(num > 0, 1.0, np.where(num < 0, 0.0, 0.5)).astype(val.dtype)
    return np.where(small, step, val)


def _smoothed(teacher, mu, sd):
    """``E[f(mu + sd eps)]``."""
    if teacher == "binary":
        return _cdf_ratio(mu, sd)
    small = sd <= _tiny(sd)
    safe = np.where(small, 1.0, sd)
    q = np.where(small, 0.0, mu) / safe
    return np.where(small, np.maximum(mu, 0.0), mu * _cdf(q) + safe * _pdf(q))


def _owens_t_ratio(h, p, q, nodes):
    """Owen's T ``T(h, p / q)``, ``q >= 0``: the form of stedyn's ``owens_t_ratio``."""
    x, wts = nodes
    h = np.abs(h)
    sgn = np.sign(p)
    ap = np.abs(p)
    near = ap <= q
    big = np.maximum(ap, q)
    red = np.minimum(ap, q) / np.where(big > 0, big, 1.0)
    tiny_q = q <= _tiny(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        ah = np.where(tiny_q, np.inf, h * ap / np.where(tiny_q, 1.0, q))
    fin = np.isfinite(ah)
    ah_fin = np.where(fin, ah, 0.0)
    hh = np.where(near, h, ah_fin)
    xs = 0.5 * red[..., None] * (x + 1.0)
    one_x2 = 1.0 + xs * xs
    t_int = 0.25 * red * np.sum(wts * np.exp(-0.5 * (hh * hh)[..., None] * one_x2) / one_x2, axis=-1) / math.pi
    t_int = np.where(near | fin, t_int, 0.0)
    phi_ah = np.where(fin, _cdf(ah_fin), 1.0)
    refl = 0.25 - (_cdf(h) - 0.5) * (phi_ah - 0.5) - t_int
    return sgn * np.where(near, t_int, refl)


class _Batch:
    """The per-batch invariants and the vectorized closed forms."""

    def __init__(self, vs, ws, teacher, ste, sigma, r):
        self.vs, self.teacher, self.ste, self.sigma, self.r = vs, teacher, ste, sigma, r
        self.dtype = vs.dtype
        nws = np.linalg.norm(ws, axis=-1)
        self.wsh = ws / nws[:, None]
        self.a = sigma * nws
        self.svs = vs.sum(-1)
        self.vsvs = np.einsum("bi,bi->b", vs, vs)
        self.nodes = _nodes(self.dtype)
        # E[f(a t)] and E[f(a t)^2] of the teacher: constant along a run.
        if teacher == "relu":
            self.m1, self.m2 = self.a * _INV_SQRT_2PI, 0.5 * self.a * self.a
        else:
            self.m1 = self.m2 = np.full_like(self.a, 0.5)

    def geometry(self, w):
        nw = np.linalg.norm(w, axis=-1)
        wh = w / nw[:, None]
        # Kahan's angle, as stedyn._numerics.angle_cos_sin.
        phi = 2.0 * np.arctan2(np.linalg.norm(wh - self.wsh, axis=-1), np.linalg.norm(wh + self.wsh, axis=-1))
        return nw, wh, phi, np.cos(phi), np.sin(phi)

    def sums(self, v):
        return np.einsum("bi,bi->b", v, v), v.sum(-1), np.einsum("bi,bi->b", v, self.vs)

    def half_mean(self, phi, c):
        if self.teacher == "relu":
            return self.a * (1.0 + c) * (0.5 * _INV_SQRT_2PI)
        return (math.pi - phi) / (2.0 * math.pi)

    def loss(self, v, w):
        nw, wh, phi, c, s = self.geometry(w)
        vv, sv, vvs = self.sums(v)
        P = self.half_mean(phi, c)
        return (
            0.125 * (vv + sv * sv) - vvs * P - 0.5 * (sv * self.svs - vvs) * self.m1
            + 0.5 * (self.vsvs * self.m2 + (self.svs * self.svs - self.vsvs) * self.m1 * self.m1)
        ), nw, phi

    def _window(self, phi, c, s, b):
        """``(alpha, beta, lam, D)`` of the STE's single window."""
        a, teacher = self.a, self.teacher
        zero = np.zeros_like(a)
        if teacher == "relu":
            g0 = (math.pi - phi) / (2.0 * math.pi)  # P(s1 > 0, t > 0)
        if self.ste == "identity":  # window (-inf, inf)
            D = 0.5 + zero if teacher == "relu" else _INV_SQRT_2PI / a
            return zero, _INV_SQRT_2PI + zero, a * c * D, D
        f0 = _INV_SQRT_2PI * _smoothed(teacher, zero, a * s)  # phi(0) F(0)
        if self.ste == "relu":  # window (0, inf)
            D = g0 if teacher == "relu" else 0.5 * _INV_SQRT_2PI / a
            alpha = _INV_SQRT_2PI + zero
            return alpha, alpha, f0 + a * c * D, D
        # crelu: window (0, h) with h = r / b.
        h = self.r / b
        alpha = -_INV_SQRT_2PI * np.expm1(-0.5 * h * h)
        if teacher == "relu":
            D = g0 - (0.5 * _cdf(-h) + _owens_t_ratio(h, c, s, self.nodes))
        else:
            D = _INV_SQRT_2PI / a * (_cdf_ratio(h, s) - 0.5)
        lam = f0 - _pdf(h) * _smoothed(teacher, a * c * h, a * s) + a * c * D
        narrow = h < 0.5
        if narrow.any():
            # Gamma + a c D cancels for a narrow window: integrate
            # E[1{0 < s1 < h} s1 F(s1)] directly, only where needed.
            xg, wg = self.nodes
            i = np.nonzero(narrow)[0]
            half = 0.5 * h[i, None]
            x = half * (xg + 1.0)
            F = _smoothed(teacher, (a * c)[i, None] * x, (a * s)[i, None] + 0.0 * x)
            lam[i] = half[:, 0] * np.sum(wg * _pdf(x) * x * F, axis=-1)
        return alpha, alpha, lam, D

    def direction(self, v, w):
        nw, wh, phi, c, s = self.geometry(w)
        vv, sv, vvs = self.sums(v)
        m1 = self.m1
        P = self.half_mean(phi, c)
        dv = 0.25 * (v + sv[:, None]) - (P - 0.5 * m1)[:, None] * self.vs - (0.5 * m1 * self.svs)[:, None]
        alpha, beta, lam, D = self._window(phi, c, s, self.sigma * nw)
        coef = vv * beta + 0.5 * (sv * sv - vv) * alpha - vvs * lam - (sv * self.svs - vvs) * m1 * alpha
        tan = vvs * self.a * D
        dw = self.sigma * (coef[:, None] * wh - tan[:, None] * (self.wsh - c[:, None] * wh))
        return dv, dw


def run_batch(v0, w0, vs, ws, *, teacher, ste, sigma=1.0, r=1.0, lr=0.05, steps=1000, record_every=5):
    """Vectorized NumPy Algorithm 1 over a batch of configurations.

    Args:
      v0, vs: arrays (B, m); w0, ws: arrays (B, n); one floating dtype.
      teacher: ``"relu"`` or ``"binary"``. ste: ``"identity"``, ``"relu"``,
        ``"crelu"``. sigma, r, lr: Python floats shared by the batch.
      steps, record_every: as in :func:`stedyn.run`.

    Returns:
      dict with final ``v`` (B, m), ``w`` (B, n) and ``loss``, ``w_norm``,
      ``angle`` of shape (B, R) at :func:`record_steps`.
    """
    _check(teacher, ste)
    bt = _Batch(np.asarray(vs), np.asarray(ws), teacher, ste, sigma, r)
    v, w = np.array(v0, copy=True), np.array(w0, copy=True)
    rec = set(record_steps(steps, record_every).tolist())
    out = {k: [] for k in ("loss", "w_norm", "angle")}
    for t in range(steps + 1):
        if t in rec:
            loss, nw, phi = bt.loss(v, w)
            out["loss"].append(loss)
            out["w_norm"].append(nw)
            out["angle"].append(phi)
        if t == steps:
            break
        dv, dw = bt.direction(v, w)
        v = v - lr * dv
        w = w - lr * dw
    return dict(v=v, w=w, **{k: np.stack(x, axis=-1) for k, x in out.items()})


# ---------------------------------------------------------------------------
# Per-configuration Python loop (scalars in Python floats)


def _cdf_s(x):
    return 0.5 * math.erfc(-x * _INV_SQRT_2)


def _pdf_s(x):
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


_TINY_S = np.finfo(np.float64).tiny * 1e4


def _cdf_ratio_s(num, den):
    if den <= _TINY_S:
        return 1.0 if num > 0 else (0.0 if num < 0 else 0.5)
    return _cdf_s(num / den)


def _smoothed_s(teacher, mu, sd):
    if teacher == "binary":
        return _cdf_ratio_s(mu, sd)
    if sd <= _TINY_S:
        return max(mu, 0.0)
    q = mu / sd
    return mu * _cdf_s(q) + sd * _pdf_s(q)


def _owens_t_s(h, p, q, nodes):
    x, wts = nodes
    h = abs(h)
    sgn = math.copysign(1.0, p) if p != 0 else 0.0
    ap = abs(p)
    big = max(ap, q)
    red = min(ap, q) / big if big > 0 else 0.0

    def integral(hh):
        xs = 0.5 * red * (x + 1.0)
        one_x2 = 1.0 + xs * xs
        return 0.25 * red * float(np.dot(wts, np.exp(-0.5 * hh * hh * one_x2) / one_x2)) / math.pi

    if ap <= q:
        return sgn * integral(h)
    if q <= _TINY_S:  # a = +-inf
        return sgn * (0.25 - (_cdf_s(h) - 0.5) * 0.5)
    ah = h * ap / q
    return sgn * (0.25 - (_cdf_s(h) - 0.5) * (_cdf_s(ah) - 0.5) - integral(ah))


def _direction_s(v, w, vs, wsh, a, svs, m1, teacher, ste, sigma, r, nodes):
    nw = float(np.linalg.norm(w))
    wh = w / nw
    phi = 2.0 * math.atan2(float(np.linalg.norm(wh - wsh)), float(np.linalg.norm(wh + wsh)))
    c, s = math.cos(phi), math.sin(phi)
    vv, sv, vvs = float(v @ v), float(v.sum()), float(v @ vs)
    P = a * (1.0 + c) * (0.5 * _INV_SQRT_2PI) if teacher == "relu" else (math.pi - phi) / (2.0 * math.pi)
    dv = 0.25 * (v + sv) - (P - 0.5 * m1) * vs - 0.5 * m1 * svs
    if ste == "identity":
        D = 0.5 if teacher == "relu" else _INV_SQRT_2PI / a
        alpha, beta, lam = 0.0, _INV_SQRT_2PI, a * c * D
    else:
        g0 = (math.pi - phi) / (2.0 * math.pi)
        f0 = _INV_SQRT_2PI * _smoothed_s(teacher, 0.0, a * s)
        if ste == "relu":
            D = g0 if teacher == "relu" else 0.5 * _INV_SQRT_2PI / a
            alpha = beta = _INV_SQRT_2PI
            lam = f0 + a * c * D
        else:
            h = r / (sigma * nw)
            alpha = beta = -_INV_SQRT_2PI * math.expm1(-0.5 * h * h)
            if teacher == "relu":
                D = g0 - (0.5 * _cdf_s(-h) + _owens_t_s(h, c, s, nodes))
            else:
                D = _INV_SQRT_2PI / a * (_cdf_ratio_s(h, s) - 0.5)
            if h < 0.5:
                xg, wg = nodes
                half = 0.5 * h
                x = half * (xg + 1.0)
                F = np.array([_smoothed_s(teacher, a * c * xi, a * s) for xi in x.tolist()])
                lam = half * float(np.sum(wg * _INV_SQRT_2PI * np.exp(-0.5 * x * x) * x * F))
            else:
                lam = f0 - _pdf_s(h) * _smoothed_s(teacher, a * c * h, a * s) + a * c * D
    coef = vv * beta + 0.5 * (sv * sv - vv) * alpha - vvs * lam - (sv * svs - vvs) * m1 * alpha
    tan = vvs * a * D
    dw = sigma * (coef * wh - tan * (wsh - c * wh))
    return dv, dw


def _loss_s(v, w, vs, wsh, a, svs, vsvs, m1, m2, teacher):
    nw = float(np.linalg.norm(w))
    wh = w / nw
    phi = 2.0 * math.atan2(float(np.linalg.norm(wh - wsh)), float(np.linalg.norm(wh + wsh)))
    c = math.cos(phi)
    vv, sv, vvs = float(v @ v), float(v.sum()), float(v @ vs)
    P = a * (1.0 + c) * (0.5 * _INV_SQRT_2PI) if teacher == "relu" else (math.pi - phi) / (2.0 * math.pi)
    loss = (
        0.125 * (vv + sv * sv) - vvs * P - 0.5 * (sv * svs - vvs) * m1
        + 0.5 * (vsvs * m2 + (svs * svs - vsvs) * m1 * m1)
    )
    return loss, nw, phi


def run_loop(v0, w0, vs, ws, *, teacher, ste, sigma=1.0, r=1.0, lr=0.05, steps=1000, record_every=5):
    """Per-configuration Python loop over NumPy closed forms (same API as :func:`run_batch`)."""
    _check(teacher, ste)
    v0, w0, vs, ws = (np.asarray(x) for x in (v0, w0, vs, ws))
    nodes = _nodes(v0.dtype, np.float64)
    rec = set(record_steps(steps, record_every).tolist())
    B = v0.shape[0]
    V, W = np.empty_like(v0), np.empty_like(w0)
    R = len(rec)
    out = {k: np.empty((B, R), v0.dtype) for k in ("loss", "w_norm", "angle")}
    for i in range(B):
        v, w, vsi = v0[i].copy(), w0[i].copy(), vs[i]
        nws = float(np.linalg.norm(ws[i]))
        wsh = ws[i] / nws
        a = sigma * nws
        svs, vsvs = float(vsi.sum()), float(vsi @ vsi)
        m1, m2 = (a * _INV_SQRT_2PI, 0.5 * a * a) if teacher == "relu" else (0.5, 0.5)
        j = 0
        for t in range(steps + 1):
            if t in rec:
                loss, nw, phi = _loss_s(v, w, vsi, wsh, a, svs, vsvs, m1, m2, teacher)
                out["loss"][i, j], out["w_norm"][i, j], out["angle"][i, j] = loss, nw, phi
                j += 1
            if t == steps:
                break
            dv, dw = _direction_s(v, w, vsi, wsh, a, svs, m1, teacher, ste, sigma, r, nodes)
            v = v - lr * dv
            w = w - lr * dw
        V[i], W[i] = v, w
    return dict(v=V, w=W, **out)


# ---------------------------------------------------------------------------
# Monte Carlo on a Gaussian mixture (the Proper-STE paper's method)


def mixture_mc_runner(teacher, mixture, *, ste, r, lr, steps, samples=10_000, dtype):
    """A jitted Algorithm 1 whose every step uses a fresh ``samples``-draw average.

    Args:
      teacher: :class:`stedyn.Teacher` (one configuration, unbatched).
      mixture: :class:`stedyn.GaussianMixture`.
      ste, r, lr: as in :func:`stedyn.run`. steps: number of updates (static).
      samples: Monte-Carlo sample size per step (the paper: 10,000).
      dtype: floating dtype of the run.

    Returns:
      ``f(v0, w0, key) -> (v, w)``, jitted; one configuration per call.
    """
    import jax
    import jax.numpy as jnp

    import stedyn as sd
    from stedyn import _empirical
    from stedyn._ste import resolve_ste

    ste_r = resolve_ste(ste)
    r = jnp.asarray(r, dtype)
    lr = jnp.asarray(lr, dtype)

    def step(carry, key):
        v, w = carry
        Z = sd.sample_mixture(mixture, samples, key=key, dtype=dtype)
        gv, gw = _empirical.coarse_grad(v, w, teacher, Z, ste_r, r)
        return (v - lr * gv, w - lr * gw), None

    @jax.jit
    def run(v0, w0, key):
        (v, w), _ = jax.lax.scan(step, (v0, w0), jax.random.split(key, steps))
        return v, w

    return run
