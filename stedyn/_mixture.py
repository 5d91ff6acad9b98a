"""Exact population quantities for Gaussian-mixture input (one configuration).

Model as in :mod:`stedyn._gaussian`: ``y = v^T step(Z w)``, teacher
``y* = v*^T f(Z w*)``, loss ``(y - y*)^2 / 2``. The input is the mixture of
the Proper-STE paper's Sec. 4 (Fig. 1): a component ``k`` is drawn with
probability ``pi_k``, and then the entries of ``Z`` are independent,
``Z_ij ~ N(mu_kij, sigma_k^2)``.

Reduction. Given ``k`` the rows ``z_i`` are independent, so every expectation
is ``sum_k pi_k`` of a diagonal (one-row) part plus products of single-row
means, exactly as for the zero-mean Gaussian (Yin et al. Lemma 1; Proper-STE
eq. 3, 6-9). Per component ``k`` and row ``i`` write ``z = mu + sigma zeta``
and use the standardized coordinates

    u = zeta . w^,   t = zeta . w*^     (standard normals, corr c = cos phi)

so that the student's pre-activation is ``x = b (u + rho)`` with
``b = sigma |w|``, ``rho = mu . w^ / sigma``, and the teacher's is
``x* = q + a t`` with ``a = sigma |w*|``, ``q = mu . w*``. With
``P = Phi(rho) = E step(x)``, ``M = E f(x*)``, ``V = Var f(x*)`` and
``C = E[step(x) f(x*)]``,

* loss (Proper-STE eq. 3 with the mixture expectation)::

      L_k = 1/2 R^2 + 1/2 sum_i v_i^2 P(1 - P) - sum_i v_i v*_i (C - P M)
            + 1/2 sum_i v*_i^2 V,      R = sum_i (v_i P_i - v*_i M_i)

  and ``L = sum_k pi_k L_k``;

* ``E[dl/dv_i | k] = P_i R + v_i P_i (1 - P_i) - v*_i (C_i - P_i M_i)``, the
  true ``dL/dv`` (Yin Lemma 4, eq. 10);

* the expected coarse gradient (Proper-STE eq. 8-10; Yin eq. 5) for
  ``mu'(x) = sum_k c_k 1{lo_k < x < hi_k}`` (the STE's windows, which are
  ``l < u < h`` with ``l = lo / b - rho``, ``h = hi / b - rho``)::

      E[g | k] = sum_i v_i R_{-i} A_i + v_i^2 B_i - v_i v*_i G_i,
      R_{-i} = R - v_i P_i + v*_i M_i,
      A_i = E[mu' z] = mu alpha0 + sigma alpha1 w^,
      B_i = E[mu' step z] = mu beta0 + sigma beta1 w^,
      G_i = E[mu' f(x*) z] = mu E0 + sigma (E1 w^ + a D (w*^ - c w^)),

  with ``alpha0 = P(l < u < h)``, ``alpha1 = E[u 1{l<u<h}] = phi(l) - phi(h)``,
  ``beta`` the same over the window cut to ``u > -rho``,
  ``E0 = E[1{l<u<h} f]``, ``E1 = E[1{l<u<h} u f]`` and
  ``D = E[1{l<u<h} f'(x*)]``. ``G`` comes from writing
  ``t = c u + s eta`` (``s = sin phi``, ``eta`` independent of ``u``) and
  Stein's lemma in ``eta``: ``E[h eta] (w*^ - c w^) / s = E[dh/dt]
  (w*^ - c w^)``, so no ``1/sin(phi)`` appears anywhere (this is the
  mixture form of the Proper-STE eq. 7 / 9 construction).

Integration. Every joint quantity is conditioned on the *teacher*
coordinate ``t``: given ``t``, ``u ~ N(c t, s^2)``, so the step and each STE
window become normal CDFs of an affine function of ``t``::

    P(l < u < h | t) = Phi((h - c t) / s) - Phi((l - c t) / s)
    E[u 1{l<u<h} | t] = c t P(l < u < h | t) + s (phi((l - ct)/s) - phi((h - ct)/s))

and ``C, E0, E1, D`` are integrals ``int phi(t) f(q + a t) K(t) dt`` of the
teacher's values against these kernels. The kernels are smoothed steps centred
at ``t = e / c`` with width ``s / |c|`` (``e`` an edge); as ``w`` turns
parallel or antiparallel to ``w*`` the width goes to 0 and a fixed rule over
the line converges slowly. Here every edge is a breakpoint with extra ends at
``+-(1, 4, 16)`` widths (:func:`_nodes`), so a step of any width, down to
exactly 0 (handled by :func:`stedyn._numerics.cdf_of_ratio`), fills graded
segments and each segment is integrated by Gauss-Legendre. The teacher adds
its own feature: the jump (binary) or kink (ReLU) at ``t = -q / a`` becomes an
integration limit, and smooth teachers (tanh, sin, user activations) get a
graded feature there of width ``1 / a``. The binary teacher's ``D`` is closed
form (``f' = delta``): ``D = phi(q/a) / a * P(l < u < h | t = -q/a)``.

The rule (cutoff, bulk breakpoints, grading, Gauss-Legendre order) depends on
the dtype: float32 uses fewer nodes, enough for float32 rounding. The true
gradient is autodiff of this loss: the loss is exact and smooth in ``w``, and
the graded nodes move smoothly with ``w`` (at exactly 0 or pi the steps are
exact steps and the nodes carry the gradient through their positions).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as nm
from ._activations import Binary, ReLU, Tanh


@dataclasses.dataclass(frozen=True)
class _Rule:
    cut: float  # integrate t over [-cut, cut]
    bulk: tuple  # fixed breakpoints
    grades: tuple  # extra ends at center +- g * width around an STE/step edge
    order: int  # Gauss-Legendre points per segment
    fast_cdf: bool = False  # Phi from phi's exponential (float32 accuracy)
    teacher_grades: tuple = (1.0, 4.0)  # the same around a smooth teacher's centre


# float64: phi(9) ~ 1e-18 and the graded segments resolve steps of any width
# to ~1e-12 relative; float32: ~1e-7 with a third of the nodes.
_RULE64 = _Rule(cut=9.0, bulk=(-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0), grades=(1.0, 4.0, 16.0), order=12)
_RULE32 = _Rule(cut=6.5, bulk=(-4.0, -2.0, 0.0, 2.0, 4.0), grades=(1.0, 4.0), order=6, fast_cdf=True)


def _rule(dtype):
    return _RULE64 if jnp.finfo(dtype).bits >= 64 else _RULE32


def _nsum(x, axis=None):
    """Sum over a small static node axis (all axes for ``None``).

    ``jnp.sum`` over quadrature nodes becomes a reduction that XLA:CPU hands
    to a library kernel (YNNPACK), whose fixed cost per call is several times
    the arithmetic: one per-panel sum over (K, m, 8, 6) points took 54 us of
    a 130 us ``coarse_grad``. Short axes (up to 8 nodes) are summed as a
    pairwise tree of slices and adds, plain elementwise code that fuses with
    its producer; longer ones as a product with a vector of ones, which under
    ``vmap`` is one matrix-vector product (measured 1.5-2x faster than either
    the reduction or unrolled adds for 48 nodes).
    """
    if axis is None:
        x = jnp.reshape(x, (-1,))
        axis = 0
    axis = axis % x.ndim
    n = x.shape[axis]
    if n > 8:
        return jnp.moveaxis(x, axis, -1) @ jnp.ones((n,), x.dtype)
    parts = [jax.lax.index_in_dim(x, i, axis, keepdims=False) for i in range(n)]
    while len(parts) > 1:
        pairs = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
        parts = pairs + parts[len(pairs) * 2:]
    return parts[0]


def _safe_div(num, den):
    """``num / den``; ``den -> 0`` maps to ``sign(num) 1e30`` (finite, gradient 0)."""
    small = jnp.abs(den) <= nm._tiny(den) * 1e4
    out = num / jnp.where(small, 1.0, den)
    return jnp.where(small, jnp.sign(num) * 1e30, out)


def _nodes(lo, features, rule, dtype):
    """Nodes ``t`` and weights ``phi(t) dt`` on ``[lo, cut]`` (``lo=None``: ``-cut``).

    ``features`` are ``(center, width, grades)``; each adds a breakpoint at its
    center and at ``center +- g width`` for its grades, so that a smoothed step
    or a kink of any width sits in segments of comparable size.

    The segments are ``[p_i, next(p_i)]`` for every breakpoint ``p_i``, with
    ``next`` the smallest breakpoint above it (ties broken by index). That
    partitions ``[lo, cut]`` like a sort would, as one fused compare-and-min
    instead of a sort, which XLA runs slowly on CPU for many short rows.
    """
    cut = rule.cut
    a = jnp.asarray(-cut, dtype) if lo is None else jnp.clip(jnp.asarray(lo, dtype), -cut, cut)
    pts = [a] + [jnp.asarray(p, dtype) for p in rule.bulk]
    big = 4.0 * cut
    for center, width, grades in features:
        center = jnp.clip(center, -big, big)
        width = jnp.minimum(width, big)
        pts.append(center)
        for g in grades:
            pts.append(center + g * width)
            pts.append(center - g * width)
    left = jnp.clip(jnp.stack(pts), a, cut)
    idx = jnp.arange(left.shape[0])
    above = (left[None, :] > left[:, None]) | ((left[None, :] == left[:, None]) & (idx[None, :] > idx[:, None]))
    right = jnp.min(jnp.where(above, left[None, :], cut), axis=1)
    x, wq = nm.gauss_legendre(rule.order, dtype)
    half = 0.5 * (right - left)
    t = (0.5 * (right + left))[:, None] + half[:, None] * x[None, :]
    wt = half[:, None] * wq[None, :] * nm.norm_pdf(t)
    return t.ravel(), wt.ravel()


# Abramowitz & Stegun 26.2.17: 1 - Phi(x) = phi(x) t P(t), t = 1 / (1 + p x),
# x >= 0, absolute error < 7.5e-8 (float32 rounding). It shares the one exp of
# phi(x), where Phi through erfc costs a second, slower transcendental.
_AS_P = 0.2316419
_AS_B = (1.330274429, -1.821255978, 1.781477937, -0.356563782, 0.319381530)


def _edge_terms(num, s, fast, guard=True):
    """``(Phi(num / s), s phi(num / s))`` for ``s >= 0``, with the limits at ``s = 0``.

    ``Phi(num / s) = P(u > e | t)`` for ``num = ct - e``; the second term is the
    density part of ``E[u 1{u > e} | t]``. At ``s = 0`` they are the step
    ``1{num > 0}`` (1/2 at 0) and 0, with finite gradients (double where, as
    in :func:`stedyn._numerics.cdf_of_ratio`). ``fast`` (float32) evaluates Phi
    from the same exponential as phi (A&S 26.2.17) instead of ``erfc``.
    ``guard=False`` skips the ``s = 0`` branches, for callers that know
    ``s`` is bounded away from 0.
    """
    if not guard:
        z = num * (1.0 / s)
        pdf = nm.norm_pdf(z)
        return _fast_cdf(z, fast, pdf), s * pdf
    small = s <= nm._tiny(s) * 1e4
    ss = jnp.where(small, 1.0, s)
    z = jnp.where(small, 0.0, num) / ss
    pdf = nm.norm_pdf(z)
    cdf = _fast_cdf(z, fast, pdf)
    step = jnp.where(num > 0, 1.0, jnp.where(num < 0, 0.0, 0.5))
    return jnp.where(small, step, cdf), jnp.where(small, 0.0, s * pdf)


def _fast_cdf(z, fast, pdf=None):
    """``Phi(z)``: through ``erfc``, or (``fast``) A&S 26.2.17 from ``phi(z)``."""
    if not fast:
        return nm.norm_cdf(z)
    pdf = nm.norm_pdf(z) if pdf is None else pdf
    t = 1.0 / (1.0 + _AS_P * jnp.abs(z))
    poly = _AS_B[0]
    for coef in _AS_B[1:]:
        poly = poly * t + coef
    tail = pdf * t * poly
    return jnp.where(z >= 0, 1.0 - tail, tail)


def _norm_cdf_diff(l, h):
    """``Phi(h) - Phi(l)`` (``None`` = infinite end), tail-aware."""
    if l is None and h is None:
        return 1.0
    if l is None:
        return nm.norm_cdf(h)
    if h is None:
        return nm.norm_cdf(-l)
    sgn = jnp.where(l > 0, -1.0, 1.0)
    return sgn * (nm.norm_cdf(sgn * h) - nm.norm_cdf(sgn * l))


def _teacher_setup(act, q, a, rule, dtype):
    """Support start, feature list and value/derivative callables for the teacher.

    Returns ``(lo, features, fval, fder)``: the integrals run over ``[lo, cut]``;
    ``fval(t)`` and ``fder(t, F)`` give ``f(q + a t)`` and ``f'(q + a t)``
    there (``F`` the values already computed).
    """
    tau = -_safe_div(q, a)
    if isinstance(act, Binary):
        return tau, [], (lambda t: jnp.ones_like(t)), None
    if isinstance(act, ReLU):
        return tau, [], (lambda t: a * (t - tau)), (lambda t, F: jnp.ones_like(t))
    width = _safe_div(jnp.ones((), dtype), a)
    if isinstance(act, Tanh):
        fder = lambda t, F: 1.0 - F * F  # noqa: E731  (tanh' = 1 - tanh^2, no second tanh)
    else:
        fder = lambda t, F: act.deriv(q + a * t)  # noqa: E731
    return None, [(tau, width, rule.teacher_grades)], (lambda t: act(q + a * t)), fder


def _row_loss_terms(act, rho, q, a, c, s, rule, dtype):
    """``(M, V, C)`` for one component and row (see module docstring)."""
    lo, feats, fval, _ = _teacher_setup(act, q, a, rule, dtype)
    width = _safe_div(s, jnp.abs(c))
    step_center = -_safe_div(rho, c)
    t, wt = _nodes(lo, feats + [(step_center, width, rule.grades)], rule, dtype)
    F = fval(t)
    M = _nsum(wt * F)
    V = _nsum(wt * F * F) - M * M
    C = _nsum(wt * F * _edge_terms(rho + c * t, s, rule.fast_cdf)[0])
    return M, V, C


def _scaled_windows(ste, r, b, rho, step_edge):
    """The STE's windows in ``u`` units; an end at 0 is ``step_edge`` itself."""
    out = []
    for lo, hi, wt in ste.windows(r):
        def edge(x):
            if x is None:
                return None
            if isinstance(x, (int, float)) and x == 0:
                return step_edge
            return x / b - rho

        out.append((edge(lo), edge(hi), wt))
    return out


def _edges_of(windows, step_edge):
    """Distinct finite edges (by identity), the step's own edge first."""
    edges = [step_edge]
    for l, h, _ in windows:
        for e in (l, h):
            if e is not None and not any(e is x for x in edges):
                edges.append(e)
    return edges


def _index(edges, e):
    return next(i for i, x in enumerate(edges) if x is e)


def _closed_window_terms(windows, step_edge, dtype):
    """``alpha0, alpha1, beta0, beta1`` (student-only, closed form)."""
    zero = jnp.zeros((), dtype)
    alpha0 = alpha1 = beta0 = beta1 = zero
    for l, h, w_k in windows:
        alpha0 = alpha0 + w_k * _norm_cdf_diff(l, h)
        alpha1 = alpha1 + w_k * nm.norm_pdf_diff(l, h)
        lp = step_edge if l is None else jnp.maximum(l, step_edge)
        hp = None if h is None else jnp.maximum(h, step_edge)
        beta0 = beta0 + w_k * _norm_cdf_diff(lp, hp)
        beta1 = beta1 + w_k * nm.norm_pdf_diff(lp, hp)
    return alpha0, alpha1, beta0, beta1


def _binary_D(l, h, tau, a, c, s):
    # f'(q + a t) = delta(t - tau) / a:  D = phi(tau) / a * P(l < u < h | t = tau).
    ctau = c * tau
    pl = 1.0 if l is None else nm.cdf_of_ratio(ctau - l, s)
    ph = 0.0 if h is None else nm.cdf_of_ratio(ctau - h, s)
    return nm.norm_pdf(tau) / a * (pl - ph)


def _window_terms(windows, edges, I_F, I_tF, I_Fd, P_F, totals, c, binary, tau, a, s, dtype):
    """``E0, E1, D`` from per-edge integrals.

    ``I_g[e] = int phi(t) g(t) P(u > e | t) dt`` for ``g = F, t F, F'``,
    ``P_F[e] = int phi(t) F(t) s phi((e - ct)/s) dt`` and ``totals`` the same
    with ``P(u > -inf) = 1``.
    """
    zero = jnp.zeros((), dtype)
    E0 = E1 = D = zero
    for l, h, w_k in windows:
        il = totals if l is None else (I_F[_index(edges, l)], I_tF[_index(edges, l)], None if binary else I_Fd[_index(edges, l)])
        ih = (zero, zero, zero) if h is None else (I_F[_index(edges, h)], I_tF[_index(edges, h)], None if binary else I_Fd[_index(edges, h)])
        pl = zero if l is None else P_F[_index(edges, l)]
        ph = zero if h is None else P_F[_index(edges, h)]
        E0 = E0 + w_k * (il[0] - ih[0])
        E1 = E1 + w_k * (c * (il[1] - ih[1]) + pl - ph)
        D = D + w_k * (_binary_D(l, h, tau, a, c, s) if binary else il[2] - ih[2])
    return E0, E1, D


def _row_coarse_terms(act, ste, r, rho, q, a, b, c, s, rule, dtype):
    """Per component and row: ``(P, M, V, C, alpha0, alpha1, beta0, beta1, E0, E1, D)``."""
    lo, feats, fval, fder = _teacher_setup(act, q, a, rule, dtype)
    width = _safe_div(s, jnp.abs(c))
    step_edge = -rho
    windows = _scaled_windows(ste, r, b, rho, step_edge)
    edges = _edges_of(windows, step_edge)
    feats = feats + [(_safe_div(e, c), width, rule.grades) for e in edges]
    t, wt = _nodes(lo, feats, rule, dtype)
    binary = isinstance(act, Binary)
    F = fval(t)
    Fd = None if binary else fder(t, F)
    M, V, C, E0, E1, D = _kernel_sums(t, wt, F, Fd, edges, windows, c, s, binary, q, a, rule.fast_cdf, dtype)
    alpha0, alpha1, beta0, beta1 = _closed_window_terms(windows, step_edge, dtype)
    return nm.norm_cdf(rho), M, V, C, alpha0, alpha1, beta0, beta1, E0, E1, D


def _kernel_sums(t, wt, F, Fd, edges, windows, c, s, binary, q, a, fast_cdf, dtype, guard=True):
    """``M, V, C, E0, E1, D`` with the step/window kernels evaluated at the nodes."""
    ct = c * t
    wF = wt * F
    M = _nsum(wF)
    # E f^2 - M^2 in one pass with M (f = 0 off the support of binary/relu).
    V = _nsum(wF * F) - M * M
    # One CDF (and one density, for E1) per distinct edge e:
    # Q_e(t) = P(u > e | t), pdf_e(t) = s phi((e - ct) / s).
    Q, pdf = zip(*[_edge_terms(ct - e, s, fast_cdf, guard) for e in edges])
    wtF = wF * t
    wFd = None if binary else wt * Fd
    I_F = [_nsum(wF * qe) for qe in Q]
    I_tF = [_nsum(wtF * qe) for qe in Q]
    I_Fd = None if binary else [_nsum(wFd * qe) for qe in Q]
    P_F = [_nsum(wF * pe) for pe in pdf]
    totals = (M, _nsum(wtF), None if binary else _nsum(wFd))
    tau = -_safe_div(q, a)
    E0, E1, D = _window_terms(windows, edges, I_F, I_tF, I_Fd, P_F, totals, c, binary, tau, a, s, dtype)
    return M, V, I_F[0], E0, E1, D


# ---------------------------------------------------------------------------
# Fast path (float32): a fixed bulk rule and the steps taken apart.
#
# The graded rule above places ~20 breakpoints per component and row and must
# order them; on a CPU that, and the CDF of every edge at every node, cost
# more than the integrand. The fast path uses the same integrals and needs no
# ordering:
#
# * a fixed bulk: ``P`` equal panels on ``[-cut, cut]`` with Gauss-Legendre
#   nodes (constants, with ``phi(t)`` folded into the weights). The binary
#   and ReLU teachers live on ``t > tau``: the panels below the one holding
#   ``tau`` are masked out and that one is replaced by ``[tau, its end]``.
#   Smooth teachers (tanh, sin, ...) are analytic on the panels while
#   ``a * panel`` is moderate; beyond ``a_lim`` the graded rule is used.
# * smooth regime, ``w = s / |c| >= w0``: the smoothed steps
#   ``Phi((ct - e) / s)`` vary on a scale >= ``w0`` and are evaluated at the
#   bulk nodes;
# * sharp regime, ``w < w0`` (near alignment): each smoothed step is taken
#   apart exactly as ``Phi(sg (t - T) / w) = 1{sg (t - T) > 0} + Lam(sg (t - T) / w)``
#   with ``T = e / c``, ``sg = sign c``, ``Lam(y) = Phi(y) - 1{y > 0}`` (odd,
#   Gaussian tails). The step part is a tail integral of the bulk rule: the
#   panels above ``T`` plus one panel ``[T, its end]``; the layer part is
#   ``sg w int phi(T + w y) g(T + w y) Lam(y) dy`` on fixed nodes in ``y``
#   (split at the teacher's kink for binary/ReLU), and the density terms of
#   ``E1`` are ``s w int phi(T + w y) g(T + w y) phi(y) dy`` on the same nodes.
#
# The regime is one scalar for all components and rows, chosen with
# ``lax.switch`` (under ``vmap`` over ``w`` every branch runs and the right
# one is selected).
#
# The binary and ReLU teachers are polynomials in ``t`` on their support, so
# their bulk sums are taken as moments ``int t^p K`` (``_support_sums``): the
# bulk's nodes and weights are then the same for every row and the moments one
# matrix product. How the work is laid out for XLA:CPU (node sums, moments,
# no concatenation in fused loops) was chosen by profiling; the findings are
# in benchmarks/README.md ("Profiling the exact mixture engine").


@dataclasses.dataclass(frozen=True)
class _FastRule:
    cut: float  # bulk [-cut, cut]
    panels: int  # equal bulk panels
    order: int  # Gauss-Legendre points per panel
    layer_cut: float  # layer integrals over |y| <= layer_cut
    layer_order: int  # Gauss-Legendre points per side of a layer
    w0: float  # smooth regime when s / |c| >= w0
    a_lim: float  # smooth teachers: fixed bulk when max_k a_k * panel <= a_lim
    fallback: _Rule  # graded rule used beyond a_lim
    fast_cdf: bool = True

    @property
    def delta(self):
        return 2.0 * self.cut / self.panels


_FAST32 = _FastRule(
    cut=5.6, panels=8, order=6, layer_cut=5.5, layer_order=8, w0=0.4, a_lim=2.5, fallback=_RULE32
)


@functools.lru_cache(maxsize=None)
def _fast_constants(rule):
    """NumPy float64 constants of the fast rule (cast on use)."""
    x, wq = np.polynomial.legendre.leggauss(rule.order)
    d = rule.delta
    mids = -rule.cut + d * (np.arange(rule.panels) + 0.5)
    tb = mids[:, None] + 0.5 * d * x[None, :]
    Wb = 0.5 * d * wq[None, :] * np.exp(-0.5 * tb * tb) / math.sqrt(2 * math.pi)
    yx, yw = np.polynomial.legendre.leggauss(rule.layer_order)
    Y = rule.layer_cut
    yy = 0.5 * Y * (yx + 1.0)
    yw = 0.5 * Y * yw
    tail = np.array([0.5 * math.erfc(y / math.sqrt(2)) for y in yy])
    ys = np.concatenate([-yy, yy])
    ws = np.concatenate([yw, yw])
    lam = np.concatenate([tail, -tail])  # Lam(y) = Phi(y) - 1{y > 0}
    phiy = np.exp(-0.5 * ys * ys) / math.sqrt(2 * math.pi)
    Pm = np.stack([np.sum(Wb * tb**p, axis=1) for p in range(3)], axis=1)  # per-panel moments
    return dict(x=x, wq=wq, tb=tb, Wb=Wb, Pm=Pm, ys=ys, ws=ws, lam=lam, phiy=phiy, yx=yx, ywq=np.polynomial.legendre.leggauss(rule.layer_order)[1])


def _row_fast(act, ste, r, rho, q, a, b, c, s, rule, dtype, sharp, loss_only=False):
    """The fast path's per-row terms (module comment above); ``sharp`` is static."""
    k_ = _fast_constants(rule)
    cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    x, wq = cast(k_["x"]), cast(k_["wq"])
    tb, Wb = cast(k_["tb"]), cast(k_["Wb"])
    cut, P, d = rule.cut, rule.panels, rule.delta
    binary = isinstance(act, Binary)
    support = binary or isinstance(act, ReLU)
    tau = -_safe_div(q, a)
    _, _, fval, fder = _teacher_setup(act, q, a, rule.fallback, dtype)

    def vals(t):
        F = fval(t)
        return F, (None if binary else fder(t, F))

    def panel(lo, hi):
        half = 0.5 * (hi - lo)
        t = 0.5 * (hi + lo) + half * x
        return t, half * wq * nm.norm_pdf(t)

    def index(t):
        return jnp.clip(jnp.floor((t + cut) / d), 0, P - 1).astype(jnp.int32)

    pidx = jnp.arange(P, dtype=jnp.int32)
    Fb, Fdb = vals(tb)
    if support:
        # The teacher lives on t > tau: the bulk panels above the one holding
        # tau are kept (``keep``), and that one becomes [tau, its end] with
        # the panel's own rule (tp, wp). Both enter through moments
        # (_support_sums), so no node array depends on the row but these 6.
        tauc = jnp.clip(tau, -cut, cut)
        k = index(tauc)
        tp, wp = panel(tauc, -cut + (k + 1).astype(dtype) * d)
    else:
        t_all, w_all, F_all = tb.ravel(), jnp.broadcast_to(Wb, tb.shape).ravel(), Fb.ravel()
        Fd_all = None if binary else Fdb.ravel()

    step_edge = -rho
    if loss_only:
        windows = []
    else:
        windows = _scaled_windows(ste, r, b, rho, step_edge)
    edges = _edges_of(windows, step_edge)

    if not sharp and support:
        M, V, C, E0, E1, D = _support_sums(
            k_, dtype, (pidx > k).astype(dtype), tp, wp, edges, windows, c, s, binary, tau, a, rule.fast_cdf
        )
    elif not sharp:
        # Here s >= w0 |c| > 0.37: the s = 0 guards are not needed.
        M, V, C, E0, E1, D = _kernel_sums(
            t_all, w_all, F_all, Fd_all, edges, windows, c, s, binary, q, a, rule.fast_cdf, dtype, guard=False
        )
    else:
        if support:
            # Moments instead of values (see _support_sums): per-panel
            # moments of the bulk are constants, masked by the kept panels.
            keep = (pidx > k).astype(dtype)
            f0, f1, ff = _support_combos(binary, a, tau)
            Pm = [keep * cast(k_["Pm"][:, p]) for p in range(3)]
            m = [_nsum(Pm[p]) + _nsum(wp * tp**p) for p in range(3)]
            M = f0(m)
            V = ff(m) - M * M
            totals = (M, f1(m), None if binary else m[0])
            Sb = [f0(Pm), f1(Pm)] + ([] if binary else [Pm[0]])
        else:
            wF = w_all * F_all
            M = _nsum(wF)
            V = _nsum(wF * F_all) - M * M
            totals = (M, _nsum(wF * t_all), None if binary else _nsum(w_all * Fd_all))
            # Per-panel sums of the bulk for the step parts.
            Sb = [_nsum(Wb * Fb, axis=1), _nsum(Wb * Fb * tb, axis=1)]
            if not binary:
                Sb.append(_nsum(Wb * Fdb, axis=1))
        w = _safe_div(s, jnp.abs(c))
        sg = jnp.where(c < 0, -1.0, 1.0)
        ys, ws = cast(k_["ys"]), cast(k_["ws"])
        lam, phiy = cast(k_["lam"]), cast(k_["phiy"])
        Y = rule.layer_cut
        yx, ywq = cast(k_["yx"]), cast(k_["ywq"])
        I_F, I_tF, I_Fd, P_F = [], [], [], []
        for e in edges:
            T = _safe_div(e, c)
            # Step part: U_g(T) = int_T^cut phi g (g = 0 below tau for binary/relu).
            Tq = jnp.clip(jnp.maximum(T, tau) if support else T, -cut, cut)
            j = index(Tq)
            above = (pidx > j).astype(dtype)
            t1, w1 = panel(Tq, -cut + (j + 1).astype(dtype) * d)
            F1, Fd1 = vals(t1)
            parts = [F1, F1 * t1] + ([] if binary else [Fd1])
            U = [_nsum(S_g * above) + _nsum(w1 * g1) for S_g, g1 in zip(Sb, parts)]
            tot = [totals[0], totals[1]] + ([] if binary else [totals[2]])
            step = [jnp.where(sg > 0, u, tt - u) for u, tt in zip(U, tot)]
            # Layer part on y-nodes.
            if support:
                # g = 0 for t < tau, i.e. y < y0: panels [A, max(A, 0)] and [max(A, 0), Y].
                A = jnp.clip(_safe_div(tau - T, w), -Y, Y)
                Bm = jnp.maximum(A, 0.0)
                # Both panels as one array by a select on a constant mask
                # (a concatenation inside XLA:CPU's fused loops costs a
                # branch per element and stops vectorization).
                first = jnp.asarray(np.arange(2 * yx.shape[0]) < yx.shape[0])
                lo_ = jnp.where(first, A, Bm)
                half = 0.5 * (jnp.where(first, Bm, jnp.asarray(Y, dtype)) - lo_)
                yv = lo_ + half * (jnp.concatenate([yx, yx]) + 1.0)
                wv = half * jnp.concatenate([ywq, ywq])
                lamv = _fast_cdf(yv, rule.fast_cdf) - (yv > 0).astype(dtype)
                phv = nm.norm_pdf(yv)
            else:
                yv, wv, lamv, phv = ys, ws, lam, phiy
            tl = T + w * yv
            Fl, Fdl = vals(tl)
            G = wv * nm.norm_pdf(tl)
            lay = [G * Fl, G * Fl * tl] + ([] if binary else [G * Fdl])
            # One matrix-vector product for the four layer sums (one kernel
            # instead of four, each of which recomputed G and the CDF).
            sums = jnp.stack([lamv * g for g in lay] + [phv * lay[0]]) @ jnp.ones(yv.shape, dtype)
            layer = [sg * w * sums[i] for i in range(len(lay))]
            I = [st + ly for st, ly in zip(step, layer)]
            I_F.append(I[0])
            I_tF.append(I[1])
            I_Fd.append(None if binary else I[2])
            P_F.append(s * w * sums[-1])
        C = I_F[0]
        E0, E1, D = _window_terms(windows, edges, I_F, I_tF, I_Fd, P_F, totals, c, binary, tau, a, s, dtype)
    if loss_only:
        return M, V, C
    alpha0, alpha1, beta0, beta1 = _closed_window_terms(windows, step_edge, dtype)
    return nm.norm_cdf(rho), M, V, C, alpha0, alpha1, beta0, beta1, E0, E1, D


def _support_combos(binary, a, tau):
    """``int f K``, ``int t f K`` and ``int f^2 K`` from the moments ``m[p] = int t^p K``.

    ``f = 1`` (binary) or ``f = a (t - tau)`` (ReLU) on the support ``t > tau``.
    """
    if binary:
        return (lambda m: m[0]), (lambda m: m[1]), (lambda m: m[0])
    return (
        lambda m: a * (m[1] - tau * m[0]),
        lambda m: a * (m[2] - tau * m[1]),
        lambda m: a * a * (m[2] - 2.0 * tau * m[1] + tau * tau * m[0]),
    )


def _support_sums(k_, dtype, keep, tp, wp, edges, windows, c, s, binary, tau, a, fast_cdf):
    """``M, V, C, E0, E1, D`` of the binary / ReLU teacher in the smooth regime, by moments.

    These teachers are polynomials in ``t`` on their support ``t > tau``
    (``f = 1``, or ``f = a (t - tau)``), so every node sum of
    :func:`_kernel_sums` is a combination of the moments
    ``m_p[K] = int_tau phi(t) t^p K(t) dt``, ``p <= 2``, of the kernels
    ``K = 1, P(u > e | t), s phi((e - ct)/s)``. On the bulk panels above
    ``tau`` (``keep``, one flag per panel) the moments are one matrix
    product of the kernels at the fixed nodes with the constant matrix
    ``(W t^p)``; the panel holding ``tau`` is the 6-node rule on
    ``[tau, its end]`` (``tp, wp``). Written with the teacher's values at
    the nodes instead, XLA:CPU repeats the per-row panel placement inside
    each of the dozen node sums, which made this branch cost twice as much.
    The centring at ``tau`` (``t - tau``) is done on the moments, which
    loses about ``eps * tau^2`` relative for ``tau > 0`` (about 1e-6 in
    float32 at ``tau = 3``; rows with larger ``tau`` carry under 0.2% of the
    Gaussian mass) and nothing for ``tau <= 0``. Measured float32 against
    float64 at m = 20, n = 25, K = 10: unchanged, worst 1.3e-6 relative.
    """
    tb = jnp.asarray(k_["tb"], dtype).reshape(-1)
    npow = 2 if binary else 3
    Wt = jnp.asarray(k_["Wb"].reshape(-1)[:, None] * k_["tb"].reshape(-1)[:, None] ** np.arange(npow), dtype)
    keep_n = jnp.repeat(keep, k_["tb"].shape[1])
    ct, ctp = c * tb, c * tp
    kern_b, kern_p = [keep_n], [jnp.ones_like(tp)]
    for e in edges:
        Qb, pb = _edge_terms(ct - e, s, fast_cdf, guard=False)
        Qp, pp = _edge_terms(ctp - e, s, fast_cdf, guard=False)
        kern_b += [keep_n * Qb, keep_n * pb]
        kern_p += [Qp, pp]
    mom = jnp.stack(kern_b) @ Wt  # (kernels, powers)
    tpow = [jnp.ones_like(tp), tp, tp * tp][:npow]
    mom = mom + jnp.stack([jnp.stack([_nsum(wp * kp * tq) for tq in tpow]) for kp in kern_p])
    f0, f1, ff = _support_combos(binary, a, tau)
    M = f0(mom[0])
    V = ff(mom[0]) - M * M
    Q = [mom[1 + 2 * i] for i in range(len(edges))]
    pdf = [mom[2 + 2 * i] for i in range(len(edges))]
    I_F = [f0(m) for m in Q]
    I_tF = [f1(m) for m in Q]
    I_Fd = None if binary else [m[0] for m in Q]
    P_F = [f0(m) for m in pdf]
    totals = (M, f1(mom[0]), None if binary else mom[0][0])
    E0, E1, D = _window_terms(windows, edges, I_F, I_tF, I_Fd, P_F, totals, c, binary, tau, a, s, dtype)
    return M, V, I_F[0], E0, E1, D


def _angle(w, ws):
    """Kahan's angle (:func:`stedyn._numerics.angle_cos_sin`), snapped to 0 / pi.

    Within rounding of alignment, ``w^ - w*^`` (or ``w^ + w*^``) is noise
    whose direction is random; its gradient would turn a kink of the loss at
    0 or pi (binary teacher) into a full-size gradient in a random direction.
    It is taken as exactly 0 there, as in :func:`stedyn._gaussian.true_grad`.

    The norms are taken in pairs (one reduction over a (2, n) array each):
    on XLA:CPU every separate reduction is a kernel launch, and this chain of
    scalars costs more in launches than in arithmetic.
    """
    nrm = nm.safe_norm(jnp.stack([w, ws]))
    wh = w / nrm[0]
    wsh = ws / nrm[1]
    tol = 8.0 * jnp.finfo(jnp.result_type(w)).eps
    nde = nm.safe_norm(jnp.stack([wh - wsh, wh + wsh]))
    # |where(|d| > tol, d, 0)| = where(|d| > tol, |d|, 0), value and gradient.
    nde = jnp.where(nde > tol, nde, 0.0)
    phi = 2.0 * jnp.arctan2(nde[0], nde[1])
    return phi, jnp.cos(phi), jnp.sin(phi), wh, wsh, nrm


def _geometry(w, teacher, means, sig):
    """Per-component/row standardized quantities, shapes (K, m) and (K,)."""
    phi, c, s, wh, wsh, nrm = _angle(w, teacher.w)
    nw, nws = nrm[0], nrm[1]
    a = sig * nws  # (K,)
    b = sig * nw  # (K,)
    # Two matrix-vector products: stacked into one (K m, n) x (n, 2) product,
    # XLA:CPU hands it to a library call that costs ~10x these two.
    rho = jnp.einsum("kin,n->ki", means, wh) / sig[:, None]
    q = jnp.einsum("kin,n->ki", means, teacher.w)
    return dict(c=c, s=s, wh=wh, wsh=wsh, a=a, b=b, rho=rho, q=q)


def _mixture_arrays(mixture, dtype):
    means = jnp.asarray(mixture.means).astype(dtype)
    K = means.shape[0]
    sig = jnp.broadcast_to(jnp.asarray(mixture.sigma).astype(dtype), (K,))
    if mixture.weights is None:
        pi = jnp.full((K,), 1.0 / K, dtype)
    else:
        pi = jnp.asarray(mixture.weights).astype(dtype)
        pi = pi / jnp.sum(pi)
    return means, sig, pi


def _rows(row, g, with_b):
    """vmap a per-row function over components (axis 0) and rows (axis 1)."""
    if with_b:
        fn = jax.vmap(jax.vmap(row, in_axes=(0, 0, None, None)), in_axes=(0, 0, 0, 0))
        return fn(g["rho"], g["q"], g["a"], g["b"])
    fn = jax.vmap(jax.vmap(row, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    return fn(g["rho"], g["q"], g["a"])


def _dispatch(act, g, rule, graded_row, fast_row, with_b):
    """Graded rule, or the fast rule's smooth / sharp regime (one scalar choice)."""
    if not isinstance(rule, _FastRule):
        return _rows(lambda *args: graded_row(*args, rule), g, with_b)
    c, s = g["c"], g["s"]
    branches = [
        lambda: _rows(lambda *args: fast_row(*args, False), g, with_b),
        lambda: _rows(lambda *args: fast_row(*args, True), g, with_b),
    ]
    sharp = _safe_div(s, jnp.abs(c)) < rule.w0
    idx = jnp.where(sharp, 1, 0)
    if not isinstance(act, (Binary, ReLU)):
        branches.append(lambda: _rows(lambda *args: graded_row(*args, rule.fallback), g, with_b))
        idx = jnp.where(jnp.max(g["a"]) * rule.delta > rule.a_lim, 2, idx)
    return jax.lax.switch(idx, branches)


def _default_rule(dtype):
    return _FAST32 if jnp.finfo(dtype).bits < 64 else _RULE64


def _setup(v, w, teacher, mixture, rule):
    """Dtype, rule, teacher activation, mixture arrays and geometry of one call."""
    dtype = jnp.result_type(v)
    means, sig, pi = _mixture_arrays(mixture, dtype)
    return dtype, rule or _default_rule(dtype), teacher.act, means, sig, pi, _geometry(w, teacher, means, sig)


def loss(v, w, teacher, mixture, rule=None):
    """Exact population loss for Gaussian-mixture input (module docstring)."""
    dtype, rule, act, means, sig, pi, g = _setup(v, w, teacher, mixture, rule)
    c, s = g["c"], g["s"]

    def graded_row(rho, q, a, rl):
        return _row_loss_terms(act, rho, q, a, c, s, rl, dtype)

    def fast_row(rho, q, a, sharp):
        return _row_fast(act, None, None, rho, q, a, None, c, s, rule, dtype, sharp, loss_only=True)

    M, V, C = _dispatch(act, g, rule, graded_row, fast_row, with_b=False)
    P = nm.norm_cdf(g["rho"])
    PQ = P * nm.norm_cdf(-g["rho"])
    vs = teacher.v
    # Row sums as elementwise products and reductions rather than
    # matrix-vector products (fewer, fusible kernels on CPU).
    R = jnp.sum(P * v - M * vs, axis=1)  # (K,)
    Lk = 0.5 * R * R + jnp.sum(0.5 * PQ * (v * v) - (C - P * M) * (v * vs) + 0.5 * V * (vs * vs), axis=1)
    return jnp.sum(pi * Lk)


def true_grad(v, w, teacher, mixture):
    """Gradient of the exact mixture loss (autodiff of :func:`loss`)."""
    return jax.grad(loss, argnums=(0, 1))(v, w, teacher, mixture)


def coarse_grad(v, w, teacher, mixture, ste, r, rule=None):
    """Expected coarse gradient (Yin Alg. 1 directions) for a windowed STE."""
    dtype, rule, act, means, sig, pi, g = _setup(v, w, teacher, mixture, rule)
    c, s = g["c"], g["s"]

    def graded_row(rho, q, a, b, rl):
        return _row_coarse_terms(act, ste, r, rho, q, a, b, c, s, rl, dtype)

    def fast_row(rho, q, a, b, sharp):
        return _row_fast(act, ste, r, rho, q, a, b, c, s, rule, dtype, sharp)

    P, M, V, C, al0, al1, be0, be1, E0, E1, D = _dispatch(act, g, rule, graded_row, fast_row, with_b=True)
    vs = teacher.v
    PQ = P * nm.norm_cdf(-g["rho"])
    R = jnp.sum(P * v - M * vs, axis=1)  # (K,)
    dv = jnp.sum(pi[:, None] * (P * R[:, None] + PQ * v - (C - P * M) * vs), axis=0)
    Rm = R[:, None] - v * P + vs * M  # R_{-i}, (K, m)
    vv, vvs = v * v, v * vs
    c_mu = v * Rm * al0 + vv * be0 - vvs * E0  # (K, m)
    c_wh = v * Rm * al1 + vv * be1 - vvs * E1
    c_d = vvs * D
    wh, wsh = g["wh"], g["wsh"]
    # A row vector times means as (K m, n): no transposed copy of means.
    K, m, n = means.shape
    mu_part = (pi[:, None] * c_mu).reshape(K * m) @ means.reshape(K * m, n)
    wh_coef = jnp.sum(pi * sig * jnp.sum(c_wh, axis=1))
    d_coef = jnp.sum(pi * sig * g["a"] * jnp.sum(c_d, axis=1))
    dw = mu_part + wh_coef * wh - d_coef * (wsh - c * wh)
    return dv, dw
