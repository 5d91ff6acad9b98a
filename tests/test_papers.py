"""Second derivation: the papers' closed forms, transcribed in NumPy, against the engine.

The engine (:mod:`stedyn._gaussian`) derives the population loss, the true
gradient and the expected coarse gradients for Gaussian input by one general
route (windows of the STE, Stein's lemma, Owen's T). Here the same quantities
are written down a second time, exactly as the papers state them:

* Yin et al. 2019 ("Understanding straight-through estimator ...",
  papers/001): binary teacher, Lemma 1 (loss), Lemma 2 eq. 6-7 (true
  gradient), Lemma 4 eq. 10-11 (ReLU STE), Lemma 7 eq. 14 (identity STE).
  Yin assumes unit input variance and |w*| = 1. We use w*/|w*| for w* and the
  rule of papers/README.md: with entries N(0, sigma^2) the loss and the true
  gradient are unchanged and every coarse gradient w.r.t. w gets a factor
  sigma (Proper-STE eq. 32: E_sigma[f(Z)] = E_1[f(sigma Z)]).
* Proper-STE (papers/000): ReLU teacher with input std sigma-hat, eq. 20
  (loss), 44-45 (true gradient), 25 / 26 / 27 (identity / ReLU / clipped-ReLU
  STE), C and S of eq. 106 by scipy quadrature, limits eq. 108-110, and the
  identities eq. 11, 13, 14, 28, 29-30.

All of them are exact, so the comparisons are in float64 with a relative
tolerance of 1e-10. "Relative" means: the error (Euclidean norm) is at most
1e-10 times the largest of the norms of the terms that the paper's formula
adds up, so an accidental cancellation between terms does not demand more
than float64 can give.

Geometry (angle, its sine, the unit vector of w* orthogonal to w) is computed
from the exact rational values of the float64 inputs (``fractions``), so the
reference stays accurate at angles of 1e-13 rad, where ``w_hat - w*_hat``
computed in floating point is mostly rounding noise. Formulas that the papers
write with a 1/sin(phi) or with |w_hat + w*_hat| in a denominator are
evaluated in the equivalent form that has no such division (each rewrite is
derived in a comment next to it); at phi = 0 and pi these forms reduce to the
papers' stated limits, which are also checked on their own.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import stedyn as sd

RTOL = 1e-10
SQ2PI = math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------
# Random configurations and exact geometry


def random_config(seed, teacher_scale=True):
    """m in 1..5, n in 2..6, v, v*, w, w* ~ N(0, 1), |w*| random, sigma, r."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 6))
    n = int(rng.integers(2, 7))
    v = rng.normal(size=m)
    vs = rng.normal(size=m)
    w = rng.normal(size=n) * rng.uniform(0.3, 3.0)
    ws = rng.normal(size=n)
    if teacher_scale:
        ws = ws / np.linalg.norm(ws) * rng.uniform(0.3, 3.0)
    sigma = float(rng.uniform(0.5, 2.0))
    r = float(rng.uniform(0.2, 3.0))
    return dict(v=v, vs=vs, w=w, ws=ws, sigma=sigma, r=r, rng=rng)


class Geometry:
    """Angle between w and w* and the frame (w_hat, p) from exact rationals.

    ``p`` is the unit vector of (I - w_hat w_hat^T) w*, i.e. Yin's
    (I - w w^T/|w|^2) w* / |(I - w w^T/|w|^2) w*|, computed as the exact
    rational vector |w|^2 w* - (w.w*) w rounded once. In the plane of w and
    w*: w*_hat = cos(phi) w_hat + sin(phi) p.
    """

    def __init__(self, w, ws):
        W = [Fraction(float(x)) for x in w]
        S = [Fraction(float(x)) for x in ws]
        ww = sum(x * x for x in W)
        ss = sum(x * x for x in S)
        d = sum(x * y for x, y in zip(W, S))
        self.nw = math.sqrt(float(ww))
        self.nws = math.sqrt(float(ss))
        self.wh = np.asarray(w, float) / self.nw
        self.wsh = np.asarray(ws, float) / self.nws
        # sin^2 and cos^2 as exact rationals (Lagrange identity), rounded once.
        self.s = math.sqrt(float((ww * ss - d * d) / (ww * ss)))
        self.c = math.copysign(math.sqrt(float(d * d / (ww * ss))), float(d))
        small = math.atan2(self.s, abs(self.c))  # angle to the nearer of +-w*
        if d >= 0:
            self.phi, self.pi_minus_phi = small, math.pi - small
            self.cos_half, self.sin_half = math.cos(small / 2), math.sin(small / 2)
        else:
            self.phi, self.pi_minus_phi = math.pi - small, small
            self.cos_half, self.sin_half = math.sin(small / 2), math.cos(small / 2)
        P = [ww * y - d * x for x, y in zip(W, S)]
        pf = np.array([float(x) for x in P])
        npf = np.linalg.norm(pf)
        self.p = pf / npf if npf > 0 else np.zeros_like(pf)

    def limit(self):
        """The same w, w* with the angle set to its limit 0 or pi (whichever is
        nearer): the papers' stated limits (Yin footnote 1, Proper-STE eq.
        108-109) are evaluated through this."""
        lim = object.__new__(Geometry)
        lim.__dict__.update(self.__dict__)
        at_zero = self.phi < math.pi / 2
        lim.phi, lim.pi_minus_phi = (0.0, math.pi) if at_zero else (math.pi, 0.0)
        lim.c, lim.s = (1.0 if at_zero else -1.0), 0.0
        lim.cos_half, lim.sin_half = (1.0, 0.0) if at_zero else (0.0, 1.0)
        lim.p = np.zeros_like(self.p)
        return lim


def check(actual, terms, what, rtol=RTOL, scale=None, extra=0.0):
    """|actual - sum(terms)| <= rtol * scale + extra, Euclidean norms.

    ``scale`` defaults to the largest norm among the terms the formula adds.
    """
    terms = [np.atleast_1d(np.asarray(t, float)) for t in terms]
    expected = np.sum(terms, axis=0)
    if scale is None:
        scale = max(float(np.linalg.norm(t)) for t in terms)
    err = float(np.linalg.norm(np.atleast_1d(np.asarray(actual, float)) - expected))
    bound = rtol * scale + extra
    assert err <= bound, (
        f"{what}: |engine - paper| = {err:.3e} > bound {bound:.3e} (scale {scale:.3e}, "
        f"relative {err / scale if scale else np.inf:.3e})\n engine {np.asarray(actual)}\n paper  {expected}"
    )


# ---------------------------------------------------------------------------
# Yin et al. 2019 (papers/001), binary teacher. Unit variance, |w*| = 1 in the
# paper; here w* -> w*/|w*| and coarse gradients w.r.t. w times sigma.


def yin_loss(v, vs, g):
    """Lemma 1: f = 1/8 [v^T(I+11^T)v - 2 v^T((1 - 2 theta/pi) I + 11^T) v* + v*^T(I+11^T)v*]."""
    one = np.ones_like(v)
    return [
        0.125 * (v @ v + (one @ v) ** 2),
        -0.25 * ((1 - 2 * g.phi / math.pi) * (v @ vs) + (one @ v) * (one @ vs)),
        0.125 * (vs @ vs + (one @ vs) ** 2),
    ]


def yin_grad_v(v, vs, g):
    """Lemma 2 eq. 6 (= Lemma 4 eq. 10 for E[dl/dv]):
    1/4 (I+11^T) v - 1/4 ((1 - 2 theta/pi) I + 11^T) v*."""
    one = np.ones_like(v)
    return [
        0.25 * (v + (one @ v) * one),
        -0.25 * ((1 - 2 * g.phi / math.pi) * vs + (one @ vs) * one),
    ]


def yin_grad_w(v, vs, g):
    """Lemma 2 eq. 7 (theta in (0, pi)):
    -(v.v*)/(2 pi |w|) (I - w w^T/|w|^2) w* / |(I - w w^T/|w|^2) w*|  (= p)."""
    return [-(v @ vs) / (2 * math.pi * g.nw) * g.p]


def yin_relu_ste(v, vs, g, sigma):
    """Lemma 4 eq. 11, times sigma (README):
    h(v,v*)/(2 sqrt(2pi)) w_hat - cos(theta/2) (v.v*)/sqrt(2pi) (w_hat + w*_hat)/|w_hat + w*_hat|,
    h = |v|^2 + (1^T v)^2 - (1^T v)(1^T v*) + v.v*.

    The unit bisector (w_hat + w*_hat)/|w_hat + w*_hat| is evaluated as
    cos(theta/2) w_hat + sin(theta/2) p: with w*_hat = cos w_hat + sin p,
    w_hat + w*_hat = 2 cos(theta/2) [cos(theta/2) w_hat + sin(theta/2) p].
    At theta = pi the term is 0 (footnote 1) since cos(pi/2) = 0.
    """
    one = np.ones_like(v)
    h = v @ v + (one @ v) ** 2 - (one @ v) * (one @ vs) + v @ vs
    bis = g.cos_half * g.wh + g.sin_half * g.p
    return [
        sigma * h / (2 * SQ2PI) * g.wh,
        -sigma * g.cos_half * (v @ vs) / SQ2PI * bis,
    ]


def yin_id_ste(v, vs, g, sigma):
    """Lemma 7 eq. 14, times sigma: 1/sqrt(2pi) (|v|^2 w_hat - (v.v*) w*_hat)."""
    return [sigma / SQ2PI * (v @ v) * g.wh, -sigma / SQ2PI * (v @ vs) * g.wsh]


# ---------------------------------------------------------------------------
# Proper-STE (papers/000), ReLU teacher, input std sigma-hat = sigma.


def ps_loss(v, vs, g, sigma):
    """Eq. 20: 1/8 v^T(I+11^T)v - s|w*|/(2 sqrt(2pi)) v^T(cos(phi) I + 11^T) v*
    + s^2 |w*|^2/(4 pi) v*^T((pi - 1) I + 11^T) v*."""
    one = np.ones_like(v)
    a = sigma * g.nws
    return [
        0.125 * (v @ v + (one @ v) ** 2),
        -a / (2 * SQ2PI) * (g.c * (v @ vs) + (one @ v) * (one @ vs)),
        a * a / (4 * math.pi) * ((math.pi - 1) * (vs @ vs) + (one @ vs) ** 2),
    ]


def ps_grad_v(v, vs, g, sigma):
    """Eq. 44: 1/4 (I+11^T) v - s|w*|/(2 sqrt(2pi)) (cos(phi) I + 11^T) v*."""
    one = np.ones_like(v)
    a = sigma * g.nws
    return [0.25 * (v + (one @ v) * one), -a / (2 * SQ2PI) * (g.c * vs + (one @ vs) * one)]


def ps_grad_w(v, vs, g, sigma, power=1):
    """Eq. 45: s^power |w*|/(2 sqrt(2pi) |w|) sin(phi) (v.v*) e_phi, e_phi = -p.

    e_phi = (-sin, cos) when w*_hat = (1, 0), w_hat = (cos, sin): the direction
    of increasing phi, i.e. minus the unit vector of w* orthogonal to w.
    ``power`` = 1 is the printed sigma-hat; 2 and 0 are the alternatives that
    the convention test rules out.
    """
    return [-(sigma**power) * g.nws / (2 * SQ2PI * g.nw) * g.s * (v @ vs) * g.p]


def ps_id_ste(v, vs, g, sigma):
    """Eq. 25: s/sqrt(2pi) w_hat (v.v) - s^2/2 w* (v.v*)."""
    ws = g.nws * g.wsh
    return [sigma / SQ2PI * (v @ v) * g.wh, -(sigma**2) / 2 * (v @ vs) * ws]


def ps_relu_ste(v, vs, g, sigma):
    """Eq. 26: s/(2 sqrt(2pi)) w_hat v^T(I+11^T)v - s^2|w*|/(2 pi |w|) w v^T(-I+11^T)v*
    - s^2 ((pi - phi) w* + |w*| sin(phi)/|w| w) (v.v*)/(2 pi)."""
    one = np.ones_like(v)
    ws = g.nws * g.wsh
    w = g.nw * g.wh
    return [
        sigma / (2 * SQ2PI) * (v @ v + (one @ v) ** 2) * g.wh,
        -(sigma**2) * g.nws / (2 * math.pi * g.nw) * ((one @ v) * (one @ vs) - v @ vs) * w,
        -(sigma**2) * (g.pi_minus_phi * ws) * (v @ vs) / (2 * math.pi),
        -(sigma**2) * (g.nws * g.s / g.nw * w) * (v @ vs) / (2 * math.pi),
    ]


def _gbrace(t):
    """{2 - (t^2 + 2) exp(-t^2/2)} of eq. 101/106 = int_0^t x^3 exp(-x^2/2) dx (eq. 104)
    = 2 P(2, t^2/2) (regularized incomplete gamma; no cancellation at small t)."""
    return 2.0 * special.gammainc(2.0, 0.5 * t * t)


def _quad(f, a, b, points=()):
    """int_a^b f by scipy quad, split at the given points; tight tolerances.

    quad's roundoff warning is silenced: near the requested 1e-13 it fires
    on integrands that are flat to rounding; accuracy is checked instead
    against the closed form of eq. 110 (test_C_S_of_eq106_and_limits).
    """
    pts = sorted({a, b, *[x for x in points if a < x < b]})
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for lo, hi in zip(pts[:-1], pts[1:]):
            val, _ = integrate.quad(f, lo, hi, epsabs=1e-300, epsrel=1e-13, limit=400)
            total += val
    return total


def ps_C_S(nws, nw, phi, sigma, r, with_abs_S=False):
    """Eq. 106 by quadrature, with sigma-hat (eq. 27 / eq. 32: w -> sigma w):

    C = |w*|/(2pi) int_{phi - pi/2}^{pi/2} cos^2(th) {2 - (t^2+2) e^{-t^2/2}} dth,
    S = |w*|/(2pi) int_{phi - pi/2}^{pi/2} sin(th) cos(th) {...} dth,
    t = r / (sigma |w| cos(th - phi)).

    In u = th - phi + pi/2 in [0, pi - phi]: cos(th - phi) = sin(u),
    cos(th) = sin(u + phi), sin(th) = -cos(u + phi). The braces switch from
    ~t^4/4 to 2 where sin(u) ~ r/(sigma|w|): near u = 0 and, for phi near 0,
    near u = pi - phi; those are quadrature breakpoints.
    """
    h = r / (sigma * nw)
    top = math.pi - phi

    def brace(u):
        su = math.sin(u)
        return 2.0 if su <= 0 else _gbrace(h / su)

    ks = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    pts = [k * h for k in ks] + [top - k * h for k in ks] + [top / 2]
    Ci = _quad(lambda u: math.sin(u + phi) ** 2 * brace(u), 0.0, top, pts)
    Si = _quad(lambda u: -math.cos(u + phi) * math.sin(u + phi) * brace(u), 0.0, top, pts)
    if with_abs_S:  # the scale of S: the same integral of |sin cos|
        Sa = _quad(lambda u: abs(math.cos(u + phi) * math.sin(u + phi)) * brace(u), 0.0, top, pts)
        return nws / (2 * math.pi) * Ci, nws / (2 * math.pi) * Si, nws / (2 * math.pi) * Sa
    return nws / (2 * math.pi) * Ci, nws / (2 * math.pi) * Si


def ps_C0_literal(nws, nw, sigma, r):
    """C(|w|, 0) exactly as printed below eq. 27 (eq. 110 with sigma-hat):
    |w*|/(2pi) (pi - h e^{-h^2/2} sqrt(2pi) - pi erfc(h/sqrt 2)), h = r/(sigma |w|).
    Its three terms are O(h) while the sum is O(h^3): it loses ~2 log10(1/h)
    digits at small h, so the tests use :func:`ps_C0` and check that the two agree."""
    h = r / (sigma * nw)
    return nws / (2 * math.pi) * (math.pi - h * math.exp(-0.5 * h * h) * SQ2PI - math.pi * math.erfc(h / math.sqrt(2)))


def ps_C0(nws, nw, sigma, r):
    """Eq. 110 without cancellation: pi erf(h/sqrt2) - sqrt(2pi) h e^{-h^2/2}
    = sqrt(2pi) int_0^h x^2 e^{-x^2/2} dx (differentiate both sides in h)
    = pi P(3/2, h^2/2), so C(|w|, 0) = |w*|/2 P(3/2, h^2/2) (P = regularized
    lower incomplete gamma; -> |w*|/2 as h -> inf, as eq. 110)."""
    h = r / (sigma * nw)
    return 0.5 * nws * special.gammainc(1.5, 0.5 * h * h)


def ps_lambda(nw, sigma, r):
    """Eq. 30: lambda = (pi - h e^{-h^2/2} sqrt(2pi) - pi erfc(h/sqrt2)) / (1 - e^{-h^2/2})
    = 2 pi C(|w|,0) / (|w*| (1 - e^{-h^2/2})), evaluated as pi P(3/2, y) / P(1, y), y = h^2/2."""
    y = 0.5 * (r / (sigma * nw)) ** 2
    return math.pi * special.gammainc(1.5, y) / special.gammainc(1.0, y)


def ps_crelu_ste(v, vs, g, sigma, r, CS=None):
    """Eq. 27:
    s/(2 sqrt(2pi)) w_hat E v^T(I+11^T)v - s^2|w*|/(2pi|w|) E w v^T(-I+11^T)v*
    - s^2 {C w*_hat + S (w_hat/sin(phi) - cot(phi) w*_hat)} (v.v*),
    E = 1 - exp(-(r/(s|w|))^2/2) (evaluated as -expm1).

    The S term: w_hat - cos(phi) w*_hat = sin(phi) (sin(phi) w_hat - cos(phi) p)
    (use w*_hat = cos w_hat + sin p), so S (w_hat/sin - cot w*_hat) =
    S (sin(phi) w_hat - cos(phi) p): no division, and 0 where S = 0. ``CS``
    overrides (C, S), e.g. with the limits of eq. 108-110.
    """
    one = np.ones_like(v)
    E = -math.expm1(-0.5 * (r / (sigma * g.nw)) ** 2)
    C, S = ps_C_S(g.nws, g.nw, g.phi, sigma, r) if CS is None else CS
    return [
        sigma / (2 * SQ2PI) * E * (v @ v + (one @ v) ** 2) * g.wh,
        -(sigma**2) * g.nws / (2 * math.pi) * E * ((one @ v) * (one @ vs) - v @ vs) * g.wh,
        -(sigma**2) * C * (v @ vs) * g.wsh,
        -(sigma**2) * S * (v @ vs) * (g.s * g.wh - g.c * g.p),
    ]


# ---------------------------------------------------------------------------
# Engine wrappers.
#
# The public functions are jitted per input shape, and one compile of all of
# them costs ~10 s on CPU. So each configuration (native m, n) is zero-padded
# to (M_PAD, N_PAD): every quantity of the papers depends on v, v* only
# through |v|^2, 1^T v, v.v*, 1^T v*, |v*|^2 and on w, w* only through their
# norms, angle and span, all unchanged by zero padding; the padded entries of
# dw must come out exactly 0. test_native_shapes runs the smallest shape
# (m, n) = (1, 2) unpadded and checks it equals the padded run.

M_PAD, N_PAD = 5, 6
STES = ("identity", "relu", "crelu")
EPS = np.finfo(np.float64).eps


def f64(x):
    return jnp.asarray(np.asarray(x, np.float64))


def _pad(x, size):
    x = np.asarray(x, np.float64)
    return np.concatenate([x, np.zeros(size - x.size)])


class Run:
    """Engine outputs for one configuration, cut back to the native (m, n)."""

    def __init__(self, cfg, act, w=None, v=None, r=None, sigma=None, native=False):
        v = cfg["v"] if v is None else v
        w = cfg["w"] if w is None else w
        self.m, self.n = len(v), len(w)
        M, N = (self.m, self.n) if native else (M_PAD, N_PAD)
        self.args = (f64(_pad(v, M)), f64(_pad(w, N)))
        self.T = sd.Teacher(v=f64(_pad(cfg["vs"], M)), w=f64(_pad(cfg["ws"], N)), activation=act)
        self.G = sd.Gaussian(f64(cfg["sigma"] if sigma is None else sigma))
        self.r = f64(cfg["r"] if r is None else r)

    def _cut(self, dv, dw):
        dv, dw = np.asarray(dv), np.asarray(dw)
        assert np.all(dw[self.n :] == 0.0), dw  # padding stays out of span(w, w*)
        return dv[: self.m], dw[: self.n]

    def loss(self):
        return float(sd.population_loss(*self.args, self.T, self.G))

    def grad(self):
        return self._cut(*sd.population_grad(*self.args, self.T, self.G))

    def coarse(self, ste):
        return self._cut(*sd.coarse_grad(*self.args, self.T, self.G, ste=ste, r=self.r))


def near_parallel(ws, angle, side, norm, rng):
    """A w at angle ``angle`` from w* (side 0) or from -w* (side pi), |w| = norm.

    w = norm (+-cos(angle) w*_hat + sin(angle) u), u a unit vector orthogonal
    to w*_hat. Rounding moves w by ~1e-16 |w|, i.e. the angle by ~1e-16 rad, so
    down to 1e-13 rad the angle is what was asked to within 1%; the exact
    angle of the rounded vectors is recomputed by :class:`Geometry` anyway.
    """
    wsh = ws / np.linalg.norm(ws)
    u = rng.normal(size=ws.size)
    for _ in range(2):
        u = u - (u @ wsh) * wsh
    u = u / np.linalg.norm(u)
    sgn = 1.0 if side == 0 else -1.0
    return norm * (sgn * math.cos(angle) * wsh + math.sin(angle) * u)


def exactly_parallel(ws, side, norm):
    """w = +-2^j w*, |w| within a factor sqrt(2) of ``norm``: a power of two
    scales exactly, so w_hat = +-w*_hat bit for bit and the angle is exactly 0 or pi."""
    j = round(math.log2(norm / np.linalg.norm(ws)))
    return (1.0 if side == 0 else -1.0) * 2.0**j * ws


# ---------------------------------------------------------------------------
# Random configurations: Yin (binary teacher) and Proper-STE (ReLU teacher)

SEEDS = list(range(24))


def _yin_checks(cfg, run, g, where):
    v, vs, s = cfg["v"], cfg["vs"], cfg["sigma"]
    check(run.loss(), yin_loss(v, vs, g), f"{where} Yin Lemma 1 loss")
    dv, dw = run.grad()
    check(dv, yin_grad_v(v, vs, g), f"{where} Yin eq. 6 dL/dv")
    check(dw, yin_grad_w(v, vs, g), f"{where} Yin eq. 7 dL/dw")
    for ste in STES:
        check(run.coarse(ste)[0], yin_grad_v(v, vs, g), f"{where} Yin eq. 10 E[dl/dv] ({ste})")
    gid = run.coarse("identity")[1]
    grelu = run.coarse("relu")[1]
    check(gid, yin_id_ste(v, vs, g, s), f"{where} Yin eq. 14 identity STE (x sigma)")
    check(grelu, yin_relu_ste(v, vs, g, s), f"{where} Yin eq. 11 ReLU STE (x sigma)")
    # Lemma 5 and Lemma 8 (times sigma): <E g, df/dw> = c sin(theta) (v.v*)^2 / ((2pi)^{3/2} |w|),
    # c = 1/2 (ReLU STE), 1 (identity STE). Scale: |E g| |df/dw| (Cauchy-Schwarz).
    for gg, c, name in [(grelu, 0.5, "Lemma 5"), (gid, 1.0, "Lemma 8")]:
        val = c * s * g.s * (v @ vs) ** 2 / ((2 * math.pi) ** 1.5 * g.nw)
        check(gg @ dw, [val], f"{where} Yin {name}", scale=np.linalg.norm(gg) * np.linalg.norm(dw))


@pytest.mark.parametrize("seed", SEEDS)
def test_yin_binary_teacher(seed):
    """Yin Lemma 1, 2 (eq. 6-7), 4 (eq. 10-11), 5, 7 (eq. 14), 8 at random configurations."""
    cfg = random_config(seed)
    _yin_checks(cfg, Run(cfg, "binary"), Geometry(cfg["w"], cfg["ws"]), f"seed {seed}")


def _ps_checks(cfg, run, g, where, crelu=True):
    v, vs, s, r = cfg["v"], cfg["vs"], cfg["sigma"], cfg["r"]
    check(run.loss(), ps_loss(v, vs, g, s), f"{where} Proper-STE eq. 20 loss")
    dv, dw = run.grad()
    check(dv, ps_grad_v(v, vs, g, s), f"{where} Proper-STE eq. 44 dL/dv")
    check(dw, ps_grad_w(v, vs, g, s), f"{where} Proper-STE eq. 45 dL/dw")
    for ste in STES:
        check(run.coarse(ste)[0], ps_grad_v(v, vs, g, s), f"{where} E[dl/dv] = eq. 44 ({ste})")
    check(run.coarse("identity")[1], ps_id_ste(v, vs, g, s), f"{where} Proper-STE eq. 25 identity STE")
    check(run.coarse("relu")[1], ps_relu_ste(v, vs, g, s), f"{where} Proper-STE eq. 26 ReLU STE")
    if crelu:
        check(run.coarse("crelu")[1], ps_crelu_ste(v, vs, g, s, r), f"{where} Proper-STE eq. 27 cReLU STE")


@pytest.mark.parametrize("seed", SEEDS)
def test_proper_ste_relu_teacher(seed):
    """Proper-STE eq. 20, 44, 45, 25, 26, 27 (C, S of eq. 106 by quadrature) with sigma."""
    cfg = random_config(seed)
    _ps_checks(cfg, Run(cfg, "relu"), Geometry(cfg["w"], cfg["ws"]), f"seed {seed}")


def test_native_shapes():
    """(m, n) = (1, 2) unpadded: same paper checks, and equal to the padded run."""
    for seed in (100, 101):
        cfg = random_config(seed)
        rng = cfg["rng"]
        cfg.update(v=rng.normal(size=1), vs=rng.normal(size=1), w=rng.normal(size=2), ws=rng.normal(size=2) * 1.7)
        g = Geometry(cfg["w"], cfg["ws"])
        for act, checks in [("binary", _yin_checks), ("relu", _ps_checks)]:
            nat, pad = Run(cfg, act, native=True), Run(cfg, act)
            checks(cfg, nat, g, f"native (1, 2) {act}")
            check(nat.loss(), [pad.loss()], "native vs padded loss")
            for a, b in [(nat.grad(), pad.grad())] + [(nat.coarse(t), pad.coarse(t)) for t in STES]:
                check(a[0], [b[0]], "native vs padded dv")
                check(a[1], [b[1]], "native vs padded dw")


# ---------------------------------------------------------------------------
# Which sigma convention of eq. 44-45 is right


def _fd_grad(f, x, h):
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def _ps_loss_plain(v, w, vs, ws, sigma):
    """Eq. 20 with cos(phi) = w.w*/(|w||w*|): a loss for finite differences."""
    c = (w @ ws) / (np.linalg.norm(w) * np.linalg.norm(ws))
    a, one = sigma * np.linalg.norm(ws), np.ones_like(v)
    return (
        0.125 * (v @ v + (one @ v) ** 2)
        - a / (2 * SQ2PI) * (c * (v @ vs) + (one @ v) * (one @ vs))
        + a * a / (4 * math.pi) * ((math.pi - 1) * (vs @ vs) + (one @ vs) ** 2)
    )


def _yin_loss_plain(v, w, vs, ws):
    c = (w @ ws) / (np.linalg.norm(w) * np.linalg.norm(ws))
    theta, one = math.acos(max(-1.0, min(1.0, c))), np.ones_like(v)
    return (
        0.125 * (v @ v + (one @ v) ** 2)
        - 0.25 * ((1 - 2 * theta / math.pi) * (v @ vs) + (one @ v) * (one @ vs))
        + 0.125 * (vs @ vs + (one @ vs) ** 2)
    )


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.7])
def test_eq45_sigma_convention(sigma):
    """Eq. 44-45 as printed (sigma-hat to the first power) is the gradient of eq. 20.

    Three independent routes agree with the sigma^1 form: central finite
    differences of eq. 20 transcribed in NumPy (no engine), finite differences
    of sd.population_loss, and jax.grad of sd.population_loss (to 1e-10).
    sigma^0 (the Appendix's sigma = 1) and sigma^2 (the factor that the coarse
    gradients carry) are off by a factor sigma and are rejected. For the binary
    teacher the true gradient does not depend on sigma at all (Yin eq. 6-7).
    """
    for seed in range(3):
        cfg = random_config(200 + seed)
        cfg["sigma"] = sigma
        v, vs, w, ws = cfg["v"], cfg["vs"], cfg["w"], cfg["ws"]
        g = Geometry(w, ws)
        run = Run(cfg, "relu")
        paper = {p: np.sum(ps_grad_w(v, vs, g, sigma, power=p), axis=0) for p in (0, 1, 2)}
        scale = np.linalg.norm(paper[1])
        fd_paper = _fd_grad(lambda x: _ps_loss_plain(v, x, vs, ws, sigma), w, 1e-6 * np.linalg.norm(w))
        jv, jw = jax.grad(lambda a, b: sd.population_loss(a, b, run.T, run.G), argnums=(0, 1))(*run.args)
        jv, jw = np.asarray(jv)[: v.size], np.asarray(jw)[: w.size]
        fd_engine = _fd_grad(
            lambda x: float(sd.population_loss(run.args[0], f64(_pad(x, N_PAD)), run.T, run.G)),
            w,
            1e-6 * np.linalg.norm(w),
        )
        check(fd_paper, [paper[1]], "FD of eq. 20 vs eq. 45 (sigma^1)", rtol=1e-7)
        check(fd_engine, [paper[1]], "FD of engine loss vs eq. 45 (sigma^1)", rtol=1e-7)
        check(jw, [paper[1]], "jax.grad of engine loss vs eq. 45 (sigma^1)")
        check(jv, ps_grad_v(v, vs, g, sigma), "jax.grad of engine loss vs eq. 44")
        for p in (0, 2):
            err = np.linalg.norm(fd_paper - paper[p]) / scale
            assert err > 0.1, f"sigma^{p} version of eq. 45 should be rejected (err {err:.2e})"
        # Binary teacher: jax.grad and FD of Lemma 1 vs eq. 6-7, for any sigma.
        run_b = Run(cfg, "binary")
        jv, jw = jax.grad(lambda a, b: sd.population_loss(a, b, run_b.T, run_b.G), argnums=(0, 1))(*run_b.args)
        check(np.asarray(jw)[: w.size], yin_grad_w(v, vs, g), "jax.grad of engine loss vs Yin eq. 7")
        check(np.asarray(jv)[: v.size], yin_grad_v(v, vs, g), "jax.grad of engine loss vs Yin eq. 6")
        fd_yin = _fd_grad(lambda x: _yin_loss_plain(v, x, vs, ws), w, 1e-6 * np.linalg.norm(w))
        check(fd_yin, yin_grad_w(v, vs, g), "FD of Yin Lemma 1 vs eq. 7", rtol=1e-7)


# ---------------------------------------------------------------------------
# Identities of Proper-STE Sec. 2 and 3.2


@pytest.mark.parametrize("act", ["binary", "relu"])
def test_scale_invariance_eq11(act):
    """Eq. 11: E[g_id/relu](v, k w) = E[g_id/relu](v, w) for k > 0 (any teacher)."""
    for seed in range(6):
        cfg = random_config(300 + seed)
        base = Run(cfg, act)
        for k in (1e-3, 0.2, 7.0, 1e3):
            scaled = Run(cfg, act, w=k * cfg["w"])
            for ste in ("identity", "relu"):
                check(scaled.coarse(ste)[1], [base.coarse(ste)[1]], f"eq. 11 {act} {ste} k={k}")


@pytest.mark.parametrize("act", ["binary", "relu"])
def test_crelu_r_scaling_eq13(act):
    """Eq. 13: E[g_crelu](v, w, k r) = E[g_crelu](v, w/k, r) (any teacher).

    So E[g_crelu] depends on r and |w| only through r/|w| (at fixed direction
    of w), which the paper's eq. 27 shows explicitly (r/(sigma |w|) everywhere).
    """
    for seed in range(6):
        cfg = random_config(400 + seed)
        for k in (0.3, 2.5, 17.0):
            lhs = Run(cfg, act, r=k * cfg["r"]).coarse("crelu")[1]
            rhs = Run(cfg, act, w=cfg["w"] / k).coarse("crelu")[1]
            check(lhs, [rhs], f"eq. 13 {act} k={k}")
            if act == "relu":
                g = Geometry(cfg["w"], cfg["ws"])
                ref = ps_crelu_ste(cfg["v"], cfg["vs"], g, cfg["sigma"], k * cfg["r"])
                check(rhs, ref, f"eq. 13 vs eq. 27 k={k}")


def test_crelu_relu_proportionality_eq28():
    """Eq. 28: at v.v* = 0 or phi = pi, E[g_crelu] = (1 - exp(-r^2/(2 sigma^2 |w|^2))) E[g_relu]."""
    for seed in range(8):
        cfg = random_config(500 + seed)
        v, vs, s, r = cfg["v"], cfg["vs"], cfg["sigma"], cfg["r"]
        if v.size == 1:
            v, vs = np.array([v[0], 0.5]), np.array([vs[0], -1.1])
            cfg.update(v=v, vs=vs)
        v_orth = v - (v @ vs) / (vs @ vs) * vs  # v.v* = 0 up to rounding
        for w, vv, name in [
            (cfg["w"], v_orth, "v.v* = 0"),
            (exactly_parallel(cfg["ws"], 1, np.linalg.norm(cfg["w"])), v, "phi = pi"),
        ]:
            run = Run(cfg, "relu", w=w, v=vv)
            factor = -math.expm1(-(r**2) / (2 * s**2 * np.linalg.norm(w) ** 2))
            grelu = run.coarse("relu")[1]
            check(run.coarse("crelu")[1], [factor * grelu], f"eq. 28 engine, {name}")
            g = Geometry(w, cfg["ws"])
            check(factor * grelu, [factor * t for t in ps_relu_ste(vv, vs, g, s)], f"eq. 28 x eq. 26, {name}")


@pytest.mark.parametrize("act", ["binary", "relu"])
def test_crelu_is_relu_for_small_w_eq14(act):
    """Eq. 14: E[g_crelu] ~ E[g_relu] when r/(sigma |w|) is large; at
    r/(sigma |w|) >= 40 the difference (~exp(-800)) is below float64 resolution."""
    for seed in range(4):
        cfg = random_config(600 + seed)
        w = cfg["w"] / np.linalg.norm(cfg["w"]) * cfg["r"] / (cfg["sigma"] * (40.0 + 30 * seed))
        run = Run(cfg, act, w=w)
        check(run.coarse("crelu")[1], [run.coarse("relu")[1]], f"eq. 14 {act}")


def test_C_S_of_eq106_and_limits():
    """C and S of eq. 106 (quadrature) against the paper's own limits.

    C(w, 0) = eq. 110 (closed form, printed below eq. 27), S(w, 0) = 0, and
    C(w, pi) = S(w, pi) = 0 (eq. 108-109); the literal and the cancellation-free
    forms of eq. 110 agree at moderate r/(sigma|w|); C, S are continuous at
    0 and pi; lambda of eq. 30 rises monotonically from 0 to pi.
    """
    rng = np.random.default_rng(700)
    for _ in range(6):
        nws, s, r = rng.uniform(0.3, 3), rng.uniform(0.5, 2), rng.uniform(0.2, 3)
        for nw in (1e-3, 0.05, 0.7, 4.0, 1e3):
            C0 = ps_C0(nws, nw, s, r)
            C, S, S_abs = ps_C_S(nws, nw, 0.0, s, r, with_abs_S=True)
            check(C, [C0], f"C(w,0) quad vs eq. 110, |w|={nw}")
            check(S, [0.0], f"S(w,0) = 0, |w|={nw}", scale=S_abs)  # odd integrand
            if r / (s * nw) > 0.05:
                check(ps_C0_literal(nws, nw, s, r), [C0], "eq. 110 literal vs stable form")
            for phi, lim in [(1e-9, (C0, 0.0)), (math.pi - 1e-9, (0.0, 0.0))]:
                C, S = ps_C_S(nws, nw, phi, s, r)
                assert abs(C - lim[0]) <= 1e-8 * nws and abs(S - lim[1]) <= 1e-8 * nws, (phi, C, S, lim)
            assert ps_C_S(nws, nw, math.pi, s, r) == (0.0, 0.0)
    lam = [ps_lambda(1.0, 1.0, h) for h in np.geomspace(1e-6, 8.0, 200)]  # h = r/(sigma |w|)
    assert np.all(np.diff(lam) > 0) and lam[0] < 1e-5, lam
    assert abs(ps_lambda(1.0, 1.0, 40.0) - math.pi) < 1e-12
    lam_literal = 2 * math.pi * ps_C0_literal(1.0, 1.0, 1.0, 1.3) / -math.expm1(-0.5 * 1.3**2)
    check(ps_lambda(1.0, 1.0, 1.3), [lam_literal], "eq. 30 literal vs stable form")


def test_crelu_at_phi0_eq29_and_global_minimum():
    """Eq. 29-31 at phi = 0 and item 3 of Sec. 3.2.3: at phi = 0,
    |w| = w0 with lambda(w0) = 2 and v = v0 = 2 sigma |w*|/sqrt(2pi) v*, both
    E[dl/dv] and E[g_crelu] vanish (the cReLU STE finds the global minimum)."""
    from scipy.optimize import brentq

    for seed in range(4):
        cfg = random_config(800 + seed)
        v, vs, s, r, ws = cfg["v"], cfg["vs"], cfg["sigma"], cfg["r"], cfg["ws"]
        w = exactly_parallel(ws, 0, np.linalg.norm(cfg["w"]))
        nw = np.linalg.norm(w)
        lam = ps_lambda(nw, s, r)
        E = -math.expm1(-0.5 * (r / (s * nw)) ** 2)
        one = np.ones_like(v)
        # eq. 29: s/(2 sqrt(2pi)) w* E v^T{(I+11^T)v/|w*| - 2s/sqrt(2pi) ((lam - 1) I + 11^T) v*}
        eq29 = [
            s / (2 * SQ2PI) * E * (v @ v + (one @ v) ** 2) / np.linalg.norm(ws) * ws,
            -s / (2 * SQ2PI) * E * 2 * s / SQ2PI * ((lam - 1) * (v @ vs) + (one @ v) * (one @ vs)) * ws,
        ]
        check(Run(cfg, "relu", w=w).coarse("crelu")[1], eq29, f"eq. 29 seed {seed}")
        # Global minimum picked by the cReLU STE.
        c0 = brentq(lambda c: ps_lambda(c, 1.0, 1.0) - 2.0, 1e-3, 1e3, xtol=1e-15, rtol=1e-15)
        w0 = r / s * c0
        v0 = 2 * s * np.linalg.norm(ws) / SQ2PI * vs
        run = Run(cfg, "relu", w=w0 * ws / np.linalg.norm(ws), v=v0)
        dv, dw = run.coarse("crelu")
        nat_v = 0.25 * (np.linalg.norm(v0) + abs(one @ v0) * np.sqrt(v0.size))
        nat_w = s / (2 * SQ2PI) * E * (v0 @ v0 + (one @ v0) ** 2)
        assert np.linalg.norm(dv) <= RTOL * nat_v, dv
        assert np.linalg.norm(dw) <= 1e-9 * nat_w, (dw, nat_w)  # w0 from a root finder: 1e-9


def test_spurious_minimum_yin_lemma7_and_pi_points():
    """Yin Lemma 6-7 and Proper-STE Sec. 3.2 at phi = pi.

    Binary teacher, theta = pi, v = (I+11^T)^{-1}(11^T - I) v*: E[dl/dv] = 0,
    E[g_relu] = 0 (Lemma 6), |E[g_id]| = sigma 2(m-1)/(sqrt(2pi)(m+1)^2)(1^T v*)^2
    (Lemma 7). ReLU teacher, phi = pi, v = v_pi of Sec. 3.1 item 2: E[dl/dv] = 0
    and the ReLU and cReLU STE gradients vanish (Sec. 3.2.2 item 2, eq. 28).
    """
    for seed in range(6):
        cfg = random_config(900 + seed)
        vs, ws, s = cfg["vs"], cfg["ws"], cfg["sigma"]
        m, one = vs.size, np.ones_like(vs)
        w = exactly_parallel(ws, 1, np.linalg.norm(cfg["w"]))
        A = np.eye(m) + np.outer(one, one)
        v_yin = np.linalg.solve(A, (np.outer(one, one) - np.eye(m)) @ vs)
        run = Run(cfg, "binary", w=w, v=v_yin)
        nat = 0.25 * (np.linalg.norm(v_yin) + np.linalg.norm(vs)) * (1 + m)
        assert np.linalg.norm(run.coarse("relu")[0]) <= RTOL * nat
        assert np.linalg.norm(run.coarse("relu")[1]) <= RTOL * s * nat
        norm_id = s * 2 * (m - 1) / (SQ2PI * (m + 1) ** 2) * (one @ vs) ** 2
        check(np.linalg.norm(run.coarse("identity")[1]), [norm_id], "Yin Lemma 7 |E g_id|", scale=s * nat)
        a = s * np.linalg.norm(ws)
        v_pi = 2 * a / SQ2PI * (-vs + 2 / (m + 1) * (one @ vs) * one)
        run = Run(cfg, "relu", w=w, v=v_pi)
        nat = (0.25 + a) * (np.linalg.norm(v_pi) + np.linalg.norm(vs)) * (1 + m) * (1 + s)
        assert np.linalg.norm(run.grad()[0]) <= RTOL * nat
        for ste in ("relu", "crelu"):
            assert np.linalg.norm(run.coarse(ste)[1]) <= RTOL * nat, ste


# ---------------------------------------------------------------------------
# Near and at angle 0 and pi, |w| in {1e-3, 1, 1e3}

NORMS = [1e-3, 1.0, 1e3]
NEAR_ANGLES = [1e-7, 1e-10, 1e-13]


def _near_points(seed, norm):
    """(label, w, cfg) for sides 0 and pi: three near angles and the exact limit."""
    cfg = random_config(seed)
    rng = cfg["rng"]
    out = []
    for side in (0, 1):
        for ang in NEAR_ANGLES:
            w = near_parallel(cfg["ws"], ang, side, norm, rng)
            g = Geometry(w, cfg["ws"])
            got = g.phi if side == 0 else g.pi_minus_phi
            assert 0.99 * ang <= got <= 1.01 * ang, (ang, got)  # really that close
            out.append((f"{'0' if side == 0 else 'pi'}{'+' if side == 0 else '-'}{ang:g}", w, g))
        w = exactly_parallel(cfg["ws"], side, norm)
        g = Geometry(w, cfg["ws"])
        assert g.s == 0.0
        out.append(("0 exactly" if side == 0 else "pi exactly", w, g))
    return cfg, out


def _true_grad_near(dw, terms, g, what):
    """dL/dw near the kink/ends: its direction, unit((I - w_hat w_hat^T) w*), is
    ill-conditioned there. A relative change eps of w (one rounding of w_hat)
    turns it by ~eps/sin(phi), so no float64 evaluation from w and w* can be
    closer than that; the bound is RTOL + 16 eps/sin(phi) for the vector and
    RTOL for its length, which is well conditioned."""
    ref = np.sum(terms, axis=0)
    check(np.linalg.norm(dw), [np.linalg.norm(ref)], f"{what} |dL/dw|")
    check(dw, terms, f"{what} dL/dw", extra=16 * EPS / g.s * np.linalg.norm(ref))


@pytest.mark.parametrize("norm", NORMS)
def test_near_limits_yin(norm):
    """Yin's formulas within 1e-7..1e-13 rad of 0 and pi and exactly there."""
    for seed in (1000, 1001):
        cfg, points = _near_points(seed, norm)
        v, vs, s = cfg["v"], cfg["vs"], cfg["sigma"]
        for label, w, g in points:
            run = Run(cfg, "binary", w=w)
            where = f"seed {seed} |w|={norm:g} angle {label}"
            geoms = [g] if g.s > 0 else []
            if g.s < 1e-12:
                geoms.append(g.limit())  # footnote 1 / theta in {0, pi}
            for gg in geoms:
                check(run.loss(), yin_loss(v, vs, gg), f"{where} Lemma 1")
                check(run.grad()[0], yin_grad_v(v, vs, gg), f"{where} eq. 6")
                check(run.coarse("identity")[1], yin_id_ste(v, vs, gg, s), f"{where} eq. 14")
                check(run.coarse("relu")[1], yin_relu_ste(v, vs, gg, s), f"{where} eq. 11")
            if g.s > 0:
                _true_grad_near(run.grad()[1], yin_grad_w(v, vs, g), g, f"{where} eq. 7")


@pytest.mark.parametrize("norm", NORMS)
def test_near_limits_proper_ste(norm):
    """Eq. 20, 44, 45, 25, 26 within 1e-7..1e-13 rad of 0 and pi and exactly there."""
    for seed in (1100, 1101):
        cfg, points = _near_points(seed, norm)
        v, vs, s = cfg["v"], cfg["vs"], cfg["sigma"]
        for label, w, g in points:
            run = Run(cfg, "relu", w=w)
            where = f"seed {seed} |w|={norm:g} angle {label}"
            geoms = [g] if g.s > 0 else []
            if g.s < 1e-12:
                geoms.append(g.limit())
            for gg in geoms:
                check(run.loss(), ps_loss(v, vs, gg, s), f"{where} eq. 20")
                check(run.grad()[0], ps_grad_v(v, vs, gg, s), f"{where} eq. 44")
                check(run.coarse("identity")[1], ps_id_ste(v, vs, gg, s), f"{where} eq. 25")
                check(run.coarse("relu")[1], ps_relu_ste(v, vs, gg, s), f"{where} eq. 26")
            # eq. 45 is proportional to sin(phi): against its natural scale
            # s|w*|/(2 sqrt(2pi)|w|) |v.v*| it is 0 to within eps near the ends.
            nat = s * g.nws / (2 * SQ2PI * g.nw) * abs(v @ vs)
            check(run.grad()[1], ps_grad_w(v, vs, g, s), f"{where} eq. 45", scale=nat)


def _crelu_near(norm, seeds):
    for seed in seeds:
        cfg, points = _near_points(seed, norm)
        v, vs, s, r = cfg["v"], cfg["vs"], cfg["sigma"], cfg["r"]
        for label, w, g in points:
            run = Run(cfg, "relu", w=w)
            where = f"seed {seed} |w|={norm:g} r/sigma={r / s:.3g} angle {label}"
            got = run.coarse("crelu")[1]
            if g.s > 0:
                check(got, ps_crelu_ste(v, vs, g, s, r), f"{where} eq. 27 (C, S by quadrature)")
            if g.s == 0.0:
                # The stated limits only exactly at 0 / pi: at 1e-13 rad the
                # O(phi) S term is ~phi/h of the O(h^2) result (h = r/(sigma|w|)),
                # i.e. ~1e-10 at |w| = 1e3, a real difference, not rounding.
                lim = g.limit()
                CS = (ps_C0(g.nws, g.nw, s, r), 0.0) if lim.phi == 0.0 else (0.0, 0.0)
                check(got, ps_crelu_ste(v, vs, lim, s, r, CS=CS), f"{where} eq. 27 with eq. 108-110")


@pytest.mark.parametrize("norm", NORMS)
def test_near_limits_crelu(norm):
    """Eq. 27 near 0 and pi, and at 0 / pi through eq. 108-109 and C(w, 0)."""
    _crelu_near(norm, (1200, 1201))


def _narrow(h, at_zero):
    cfg = random_config(1300)
    v, vs, s, r, ws = cfg["v"], cfg["vs"], cfg["sigma"], cfg["r"], cfg["ws"]
    if at_zero:  # exactly parallel, |w| within a factor sqrt(2) of r/(sigma h)
        w = exactly_parallel(ws, 0, r / (s * h))
        assert Geometry(w, ws).s == 0.0
    else:
        w = cfg["w"] / np.linalg.norm(cfg["w"]) * r / (s * h)
    g = Geometry(w, ws)
    CS = (ps_C0(g.nws, g.nw, s, r), 0.0) if at_zero else None
    got = Run(cfg, "relu", w=w).coarse("crelu")[1]
    check(got, ps_crelu_ste(v, vs, g, s, r, CS=CS), f"eq. 27 at h = {h:g}, phi = {g.phi:.3g}")


@pytest.mark.parametrize("h", [1e-3, 1e-4, 1e-5])
def test_crelu_narrow_window_generic_angle(h):
    """Eq. 27 at r/(sigma |w|) = h << 1 and a generic angle."""
    _narrow(h, at_zero=False)


@pytest.mark.parametrize("h", [1e-3, 1e-4, 1e-5])
def test_crelu_narrow_window_phi0(h):
    """Eq. 27 with eq. 108-110 at phi = 0 and r/(sigma |w|) = h << 1.

    Regression: the engine used to form alpha, beta = phi(l) - phi(h) and the
    window probability D as differences of nearly equal numbers, an error of
    ~eps/h^2 relative to the O(h^2) result here (5e-10 at h = 1e-3, 3e-8 at
    1e-4, 4e-6 at 1e-5, both differences contributing)."""
    _narrow(h, at_zero=True)


def test_binary_true_grad_at_kink_is_zero():
    """At theta = 0 or pi exactly Yin eq. 7 does not apply (Lemma 2 needs theta in
    (0, pi)); the engine documents dL/dw = 0 there (a subgradient of the kink).

    Regression: the engine used to normalize the rounding residue of
    w*_hat - (w_hat.w*_hat) w_hat, returning a full-length |v.v*|/(2 pi |w|)
    vector along +-w (not a subgradient: those are all orthogonal to w). Under
    jit the computed angle of exactly parallel inputs is ~1e-17, not 0, and
    sin(fl(pi)) = 1.2e-16, so a test on sin(phi) alone does not catch it."""
    for seed in range(4):
        cfg = random_config(1400 + seed)
        for side in (0, 1):
            w = exactly_parallel(cfg["ws"], side, np.linalg.norm(cfg["w"]))
            assert Geometry(w, cfg["ws"]).s == 0.0
            dw = Run(cfg, "binary", w=w).grad()[1]
            assert np.all(dw == 0.0), f"side {side}: dL/dw = {dw}, |dL/dw| = {np.linalg.norm(dw):.3e}"
