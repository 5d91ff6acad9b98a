"""Algorithm 1 (coarse gradient descent) and its relatives as a ``lax.scan``.

One configuration is simulated by :func:`simulate`, a pure traceable function;
:func:`run` validates, finds the batch axes, vmaps and jits it, and turns the
final state into an outcome label. Sweeps (:mod:`stedyn._sweep`) vmap the
same :func:`simulate` over chunks of configurations.

Update rules (``rule``):

* ``"coarse"``: Yin et al. Algorithm 1, ``v <- v - eta E[dl/dv]``,
  ``w <- w - eta E[g_ste]`` with the expected coarse gradient of the STE.
* ``"true"``: gradient descent on the population loss (the reference the
  papers compare against; exact on Gaussian input).
* ``"normalized"``: BCGD eq. 20 (Yin et al., blended coarse gradient
  descent): the coarse step, then ``w <- w / |w|``.

With a ``quantizer`` the filter is quantized (BCGD Sec. 3): the state keeps a
float filter ``w_f``, the network uses ``w = proj_Q(w_f)``
(:mod:`stedyn._quantize`), and ``w_f`` takes the step of ``"coarse"`` or
``"true"`` computed at ``w``: ``w_f <- (1 - rho) w_f + rho w - eta g(w)``,
which is BinaryConnect for ``rho = 0`` and the blended update of eq. 10 for
``rho > 0``. ``v`` stays float and takes the plain step.

Any of them can hand its directions to an optax optimizer instead of the plain
``-eta`` step (momentum, Adam, schedules).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as nm
from ._model import Empirical, Gaussian, Teacher, _check_floating, _concrete, check_data, check_problem
from ._population import check_ste_for_data, coarse_grad_core, loss_core, true_grad_core
from . import _gaussian
from ._quantize import best_quantized, resolve_quantizer
from ._ste import resolve_ste
from . import _theory

OUTCOMES = ("global_min", "spurious_min", "saddle", "unbounded", "diverged", "not_converged")
"""Outcome names; ``RunResult.outcome_code`` indexes this tuple."""

RULES = ("coarse", "true", "normalized")

METRICS = ("loss", "w_norm", "angle", "v_cos", "dv_norm", "dw_norm", "stationary_dist")
"""Recorded metrics. ``stationary_dist`` is NaN where no theory applies."""

_GLOBAL, _SPURIOUS, _SADDLE, _UNBOUNDED, _DIVERGED, _NOT_CONVERGED = range(6)
# Stop codes carried through the scan.
_RUNNING, _STOP_NONFINITE, _STOP_RANGE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """How :func:`run` turns a final state into an outcome.

    Let ``G`` be the largest norm of the update direction ``(dv, dw)`` seen at
    the recorded steps, and ``thr = grad_rtol * G + grad_atol``. At the final
    state the direction is split into ``dv``, the part of ``dw`` along ``w``
    (radial: it only rescales ``w``, to which the loss is blind) and the rest
    (tangential: it turns ``w``).

    * **stationary** when ``|dv|``, ``|dw_tan|`` and (except for the
      ``"normalized"`` rule, which undoes radial moves) ``|dw_rad|`` are all
      ``<= thr``. On Gaussian input with a binary or ReLU teacher, where the
      theory knows every stationary point (Yin Prop. 1; Proper-STE Sec. 3.1),
      the nearest one (in ``stationary_dist``) names the outcome: ``v_0`` is
      ``"global_min"``, ``v_bar`` is ``"saddle"``, ``v_pi`` is
      ``"spurious_min"`` if :func:`stedyn.saddle_exists` (else that point
      is itself a saddle: ``"saddle"``). Otherwise the angle to ``w*``
      decides: ``< angle_tol`` is ``"global_min"``, ``> pi - angle_tol`` is
      ``"spurious_min"``, anything else ``"saddle"``.
    * **unbounded** when ``|w|/|w0|`` left ``[1/w_ratio, w_ratio]`` (the run
      stops there), or when the run is not stationary but the loss has
      settled (its change over the last quarter of the records is
      ``<= loss_rtol`` times the initial loss) while ``|w|`` still drifts
      one way, by ``|log(|w|_end / |w|_{3/4})| > w_drift`` and monotonically
      over those records: the identity/ReLU-STE
      behaviour of the Proper-STE paper, where the coarse gradient keeps a
      part along ``w`` that the scale-blind loss cannot feel.
    * **diverged** when a step produced NaN/inf or blew ``|v|`` up beyond
      ``w_ratio * (|v0| + |v*|)``; the run keeps the last good state and
      ``stop_step`` says which step failed.
    * **not_converged** otherwise.

    ``grad_rtol = 1e-5`` sits above float32 round-off of the directions at a
    stationary point (about ``1e-7`` relative) and well below a run that is
    still moving; a run that has not settled by the last step is reported as
    ``"not_converged"`` rather than guessed. Being relative, the defaults do
    not change when the teacher is rescaled.
    """

    grad_rtol: float = 1e-5
    grad_atol: float = 1e-9
    angle_tol: float = 1e-2
    loss_rtol: float = 1e-4
    w_drift: float = 0.05
    w_ratio: float = 1e8

    def __post_init__(self):
        for f in dataclasses.fields(self):
            x = getattr(self, f.name)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise ValueError(f"Tolerances.{f.name} must be a finite number >= 0; got {x!r}")
        if self.w_ratio <= 1:
            raise ValueError(f"Tolerances.w_ratio must be > 1; got {self.w_ratio!r}")
        if self.angle_tol >= math.pi / 2:
            raise ValueError(f"Tolerances.angle_tol must be < pi/2; got {self.angle_tol!r}")


# ---------------------------------------------------------------------------
# One configuration


def _has_theory(teacher, data):
    return isinstance(data, Gaussian) and teacher.act.name in ("binary", "relu")


def _known_points(teacher, data, dtype):
    """``(vs, angles, exists, v_scale)`` of the theory's stationary points."""
    sigma = jnp.asarray(data.sigma).astype(dtype)
    v0, a0 = _theory.global_min(teacher, sigma)
    vb, ab, exists = _theory.saddle_point(teacher, sigma)
    vp, ap = _theory.spurious_min(teacher, sigma)
    scale = nm.safe_norm(v0)
    return jnp.stack([v0, vb, vp]), jnp.stack([a0, ab, ap]), exists, scale


def _directions(v, w, teacher, data, ste, r, rule):
    if rule == "true":
        return true_grad_core(v, w, teacher, data)
    return coarse_grad_core(v, w, teacher, data, ste, r)


def _point_metrics(theory, phi, sq_dists):
    """``(stationary_dist, pi_is_min, nearest)`` from squared v-distances to the 3 points."""
    if theory is None:
        return jnp.full((), jnp.nan, phi.dtype), jnp.ones((), bool), jnp.full((), -1, jnp.int32)
    _, pa, exists, scale = theory
    # Three named distances and elementwise minima rather than a reduction
    # over a length-3 axis: batched, that axis would be a separate
    # reduction kernel at every record.
    d0, d1, d2 = (jnp.sqrt(sq_dists[k] / scale**2 + (phi - pa[k]) ** 2) for k in range(3))
    d1 = jnp.where(exists, d1, jnp.inf)
    nearest = jnp.where((d0 <= d1) & (d0 <= d2), 0, jnp.where(d1 <= d2, 1, 2)).astype(jnp.int32)
    return jnp.minimum(jnp.minimum(d0, d1), d2), exists, nearest


def _record(loss, wn, phi, v_cos, gv_norm, gw_norm, g_rad, g_tan, point):
    dist, pi_is_min, nearest = point
    rec = dict(loss=loss, w_norm=wn, angle=phi, v_cos=v_cos, dv_norm=gv_norm, dw_norm=gw_norm, stationary_dist=dist)
    split = dict(gv=gv_norm, g_rad=jnp.abs(g_rad), g_tan=g_tan, pi_is_min=pi_is_min, nearest=nearest)
    return rec, split


class _VectorPath:
    """The state is ``(v, w)`` itself; any data, rule and optimizer."""

    def __init__(self, v0, w0, teacher, data, ste, r, rule, theory):
        self.teacher, self.data, self.ste, self.r, self.rule, self.theory = teacher, data, ste, r, rule, theory
        self.p0 = (v0, w0)

    def direction(self, p):
        return _directions(p[0], p[1], self.teacher, self.data, self.ste, self.r, self.rule)

    def norms(self, p):
        return nm.safe_norm(p[0]), nm.safe_norm(p[1])

    def normalize_w(self, p):
        return (p[0], p[1] / nm.safe_norm(p[1]))

    def metrics(self, p, g):
        v, w = p
        gv, gw = g
        teacher = self.teacher
        phi, _, _, wh, _ = nm.angle_cos_sin(w, teacher.w)
        vn = nm.safe_norm(v) * nm.safe_norm(teacher.v)
        v_cos = jnp.where(vn > 0, jnp.dot(v, teacher.v) / jnp.where(vn > 0, vn, 1.0), 0.0)
        g_rad = jnp.dot(gw, wh)
        g_tan = nm.safe_norm(gw - g_rad * wh)
        sq = None if self.theory is None else jnp.sum((v[None, :] - self.theory[0]) ** 2, axis=-1)
        return _record(
            loss_core(v, w, teacher, self.data), nm.safe_norm(w), phi, v_cos, nm.safe_norm(gv), nm.safe_norm(gw),
            g_rad, g_tan, _point_metrics(self.theory, phi, sq),
        )

    def vectors(self, p):
        return p


class _QuantizedPath(_VectorPath):
    """The state is ``(v, w_f)``; the network uses ``w = proj_Q(w_f)`` (BCGD Sec. 3).

    Directions, metrics and the returned filter are those of the quantized
    ``w``; the float ``w_f`` only accumulates the steps. ``move_sq`` records
    ``|v' - v|^2 + |w' - w|^2`` of the last step (the right-hand side of the
    sufficient descent property, BCGD eq. 9).
    """

    def __init__(self, v0, w0, teacher, data, ste, r, rule, theory, quantizer):
        super().__init__(v0, w0, teacher, data, ste, r, rule, None)
        self.quantizer = quantizer

    def q(self, p):
        return (p[0], self.quantizer(p[1]))

    def direction(self, p):
        return super().direction(self.q(p))

    def blend(self, p, p1, rho):
        """BCGD eq. 10: add ``rho (proj_Q(w_f) - w_f)`` to the plain step."""
        return (p1[0], p1[1] + rho * (self.quantizer(p[1]) - p[1]))

    def move(self, p, p1):
        """``(|v' - v|^2 + |w' - w|^2, w_f' - w_f)`` of one step."""
        (v, w), (v1, w1) = self.q(p), self.q(p1)
        return jnp.sum((v1 - v) ** 2) + jnp.sum((w1 - w) ** 2), p1[1] - p[1]

    def direction_holds(self, p, dwf, rho):
        """Whether the quantized direction survives the float filter's drift.

        With ``v`` settled and the quantized ``w`` fixed, the direction ``g``
        is constant, and so is the float filter's step until the quantization
        changes: ``w_f(t) = w_f + dwf (1 - (1 - rho)^t) / rho`` (``w_f + t dwf``
        for BinaryConnect), which approaches the fixed point
        ``w_f + dwf / rho`` for ``rho > 0`` and runs off along ``dwf`` for
        ``rho = 0``. The direction is final only if ``proj_Q`` keeps it along
        that whole path; checked at ``t = 10^k``, ``k = 0..8``, and at the
        limit for ``rho > 0``. A direction that merely paused (a float entry
        still drifting towards its quantization threshold) fails the check.
        """
        w = p[1]
        uq = nm.safe_normalize(self.quantizer(w))
        safe_rho = jnp.where(rho > 0, rho, jnp.ones_like(rho))
        ok = jnp.ones((), bool)
        for k in range(9):
            t = 10.0**k
            f = jnp.where(rho > 0, -jnp.expm1(t * jnp.log1p(-rho)) / safe_rho, t)
            ok &= jnp.sum((nm.safe_normalize(self.quantizer(w + f * dwf)) - uq) ** 2) <= _DIRECTION_ATOL**2
        limit = nm.safe_normalize(self.quantizer(w + dwf / safe_rho))
        return ok & ((rho <= 0) | (jnp.sum((limit - uq) ** 2) <= _DIRECTION_ATOL**2))

    def metrics(self, p, g):
        rec, split = super().metrics(self.q(p), g)
        return rec, split

    def vectors(self, p):
        return self.q(p)


# The quantized direction takes discrete values: distinct ones are at least
# ~2/sqrt(n) rad apart for sign vectors, far above this.
_DIRECTION_ATOL = 1e-5


def _orthonormal(x, basis):
    """Unit part of ``x`` orthogonal to the unit vectors ``basis`` (0 if none).

    Classical Gram-Schmidt applied twice, so a residual at rounding level is
    still orthogonal to the basis to rounding ("twice is enough").
    """
    for _ in range(2):
        for e in basis:
            x = x - jnp.dot(x, e) * e
    return nm.safe_normalize(x)


class _ReducedPath:
    """Gaussian data with plain steps: the exact dynamics in 5 coordinates.

    Every direction is a combination of ``v``, ``1``, ``v*`` (for ``v``) and
    of ``w^``, ``w*^`` (for ``w``), so ``v`` stays in ``span{v0, 1, v*}`` and
    ``w`` in ``span{w0, w*}`` for all time (Algorithm 1, true gradient descent
    and the normalized rule alike). With orthonormal bases ``e1 = 1/sqrt(m)``,
    ``e2 = unit(v* - mean(v*) 1)``, ``e3`` (the rest of ``v0``) and ``u``
    (the part of ``w0`` orthogonal to ``w*``), ``w*^``, the state is
    ``v = c0 e1 + c1 e2 + c2 e3`` and ``w = x u + y w*^``, and every sum the
    closed forms need is exact in these coordinates::

        |v|^2 = |c|^2, 1^T v = sqrt(m) c0, v.v* = c0 p0 + c1 p1,
        |w| = hypot(x, y), angle = atan2(|x|, y)

    (``p0 = 1^T v* / sqrt(m)``, ``p1 = |v* - mean(v*) 1|``). A step then costs
    the scalar closed forms plus a few dozen flops, independent of ``m`` and
    ``n``, with no reductions over vectors; the angle comes straight from
    ``atan2`` of the two coordinates (:func:`stedyn._numerics.atan2_nonneg`,
    a few ulp, relative near 0). The narrow-window quadrature of the
    clipped-ReLU STE runs only when some configuration of the batch needs it
    (``coarse_w_from(..., lazy=True)``). ``v`` and ``w`` are rebuilt from the
    coordinates at the end. The state stays a tuple of 5 arrays: one
    stacked ``(B, 5)`` array measured a few percent faster but changed XLA's
    fusion choices between 1-device and sharded programs, and with them the
    float32 rounding that sweeps must keep independent of the device count.
    """

    def __init__(self, v0, w0, teacher, data, ste, r, rule, theory):
        from ._population import _sigma

        self.act, self.ste, self.r, self.rule = teacher.act, ste, r, rule
        self.sigma = _sigma(data, v0)
        m = v0.shape[0]
        dtype = v0.dtype
        self.sqm = math.sqrt(m)
        e1 = jnp.full((m,), 1.0 / self.sqm, dtype)
        vs = teacher.v
        e2 = _orthonormal(vs, [e1])
        e3 = _orthonormal(v0, [e1, e2])
        self.E = (e1, e2, e3)
        self.p0_ = jnp.sum(vs) / self.sqm
        self.p1_ = jnp.dot(vs, e2)
        self.svs = jnp.sum(vs)
        self.vsvs = jnp.dot(vs, vs)
        self.vsn = nm.safe_norm(vs)
        self.wsn = nm.safe_norm(teacher.w)
        self.wsh = teacher.w / self.wsn
        self.u = _orthonormal(w0, [self.wsh])
        self.p0 = tuple(jnp.dot(v0, e) for e in self.E) + (jnp.dot(w0, self.u), jnp.dot(w0, self.wsh))
        if theory is not None:
            pv = theory[0]
            # The stationary points lie in span{1, v*}: their coordinates.
            self.points = tuple((pv @ e1, pv @ e2, pv @ e3) for _ in (0,))[0]
        self.theory = theory

    def _q(self, p):
        c0, c1, c2, _, _ = p
        return dict(
            vv=c0 * c0 + c1 * c1 + c2 * c2, sv=self.sqm * c0, svs=self.svs,
            vvs=c0 * self.p0_ + c1 * self.p1_, vsvs=self.vsvs,
        )

    def _g(self, p):
        x, y = p[3], p[4]
        nw = jnp.sqrt(x * x + y * y)
        ax = jnp.abs(x)
        c, s = y / nw, ax / nw
        # atan2_nonneg: vectorizable (jnp.arctan2 is a scalar library call on CPU).
        return dict(phi=nm.atan2_nonneg(ax, y), c=c, s=s, a=self.sigma * self.wsn, b=self.sigma * nw, nw=nw)

    def direction(self, p):
        act = self.act
        c0, c1, c2, x, y = p
        g, q = self._g(p), self._q(p)
        m1, P = _gaussian.grad_v_from(act, g, q)
        k1 = 0.25 * q["sv"] - 0.5 * m1 * self.svs
        kvs = P - 0.5 * m1
        gv = (0.25 * c0 + k1 * self.sqm - kvs * self.p0_, 0.25 * c1 - kvs * self.p1_, 0.25 * c2)
        nw = g["nw"]
        if self.rule == "true":
            k = _gaussian.true_w_from(act, g, q)
            pos = g["s"] > 8.0 * jnp.finfo(jnp.result_type(nw)).eps
            # unit(w*^ - c w^) = sign(x) (-y, x) / |w|.
            kk = jnp.where(pos, k * jnp.sign(x) / nw, 0.0)
            gw = (-kk * y, kk * x)
        else:
            kr, kt = _gaussian.coarse_w_from(act, g, q, m1, self.ste, self.r, lazy=True)
            # sigma (kr w^ - kt (w*^ - c w^)), with w*^ - c w^ = (-x y, x^2) / |w|^2.
            a = kr / nw
            b = kt * x / (nw * nw)
            gw = (self.sigma * (a * x + b * y), self.sigma * (a * y - b * x))
        return gv + gw

    def norms(self, p):
        c0, c1, c2, x, y = p
        return jnp.sqrt(c0 * c0 + c1 * c1 + c2 * c2), jnp.sqrt(x * x + y * y)

    def normalize_w(self, p):
        nw = jnp.sqrt(p[3] * p[3] + p[4] * p[4])
        return p[:3] + (p[3] / nw, p[4] / nw)

    def metrics(self, p, g):
        c0, c1, c2, x, y = p
        geo, q = self._g(p), self._q(p)
        nw = geo["nw"]
        vn = jnp.sqrt(q["vv"]) * self.vsn
        v_cos = jnp.where(vn > 0, q["vvs"] / jnp.where(vn > 0, vn, 1.0), 0.0)
        gx, gy = g[3], g[4]
        g_rad = (gx * x + gy * y) / nw
        g_tan = jnp.abs(gx * y - gy * x) / nw
        sq = None
        if self.theory is not None:
            P0, P1, P2 = self.points
            sq = (c0 - P0) ** 2 + (c1 - P1) ** 2 + (c2 - P2) ** 2
        return _record(
            _gaussian.loss_from(self.act, geo, q), nw, geo["phi"], v_cos,
            jnp.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2), jnp.sqrt(gx * gx + gy * gy), g_rad, g_tan,
            _point_metrics(self.theory, geo["phi"], sq),
        )

    def vectors(self, p):
        e1, e2, e3 = self.E
        return p[0] * e1 + p[1] * e2 + p[2] * e3, p[3] * self.u + p[4] * self.wsh


def _make_optimizer(optimizer, lr):
    import optax

    if optimizer is None:
        return None
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    return optimizer(lr)


def simulate(v0, w0, teacher, data, lr, r, *, ste, rule, optimizer, steps, record_every, tol, quantizer=None,
             rho=None):
    """Run one configuration; pure and traceable (vmap it for batches).

    Args:
      v0: (m,) initial second-layer weights. w0: (n,) initial filter.
      teacher: :class:`stedyn.Teacher`. data: a data distribution.
      lr, r: scalars of the dtype of ``v0`` (learning rate, clip value).
      ste: resolved :class:`stedyn.STE`. rule: one of :data:`RULES`.
      optimizer: ``None``, an optax ``GradientTransformation``, or a factory
        called as ``optimizer(lr)``.
      steps, record_every: static ints. tol: :class:`Tolerances`.
      quantizer: ``None``, or a static :class:`stedyn.Quantizer`: quantize
        the filter (BCGD Sec. 3).
      rho: blending factor, a scalar of ``v0``'s dtype (with ``quantizer``).

    Returns:
      dict with ``v``, ``w`` (final), ``records`` (metric -> (R,)),
      ``outcome_code``, ``stop_step`` (-1 if every step ran) and the final
      metrics ``final_<name>``. With a quantizer ``w`` is the quantized
      filter, ``w_float`` the float one, and ``move_sq`` is recorded.

    Gaussian data with plain steps (``optimizer=None``) runs in the reduced
    coordinates of :class:`_ReducedPath` (exact; cost independent of m and
    n); anything else steps the vectors themselves. Either way the direction
    at the current state is carried from one step to the next, so the
    records reuse it instead of evaluating it again.
    """
    dtype = v0.dtype
    theory = _known_points(teacher, data, dtype) if _has_theory(teacher, data) else None
    opt = _make_optimizer(optimizer, lr)
    quantized = quantizer is not None
    reduced = opt is None and isinstance(data, Gaussian) and not quantized
    if quantized:
        path = _QuantizedPath(v0, w0, teacher, data, ste, r, rule, None, resolve_quantizer(quantizer))
    else:
        path = (_ReducedPath if reduced else _VectorPath)(v0, w0, teacher, data, ste, r, rule, theory)
    params = path.p0
    # optax mixes int32 step counts with floats (bias corrections, schedules),
    # which strict dtype promotion rejects; its arithmetic is optax's business.
    with jax.numpy_dtype_promotion("standard"):
        opt_state = opt.init(params) if opt is not None else ()
    vn0, w0n = path.norms(params)
    # v has a bounded optimum for every w, so |v| far beyond both |v0| and
    # |v*| means the iteration is blowing up, not drifting.
    v_cap = tol.w_ratio * (vn0 + nm.safe_norm(teacher.v))

    def sel(take, new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, old)

    def step(carry):
        p, g, ostate, status, stop, t, aux = carry
        t = t + 1
        if opt is None:
            p1, ostate1 = jax.tree_util.tree_map(lambda x, d: x - lr * d, p, g), ostate
        else:
            with jax.numpy_dtype_promotion("standard"):
                upd, ostate1 = opt.update(g, ostate, p)
            p1 = jax.tree_util.tree_map(lambda x, u: x + u.astype(dtype), p, upd)
        if rule == "normalized":
            p1 = path.normalize_w(p1)
        elif quantized:
            p1 = path.blend(p, p1, rho)
        aux1 = path.move(p, p1) if quantized else ()
        vn1, wn1 = path.norms(p1)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(p1)]))
        finite = finite & (wn1 > 0) & (vn1 <= v_cap)
        in_range = (wn1 <= w0n * tol.w_ratio) & (wn1 >= w0n / tol.w_ratio)
        running = status == _RUNNING
        take = running & finite
        g1 = path.direction(p1)
        p, g, ostate, aux = sel(take, (p1, g1, ostate1, aux1), (p, g, ostate, jax.tree_util.tree_map(jnp.zeros_like, aux)))
        new_status = jnp.where(~finite, _STOP_NONFINITE, jnp.where(in_range, _RUNNING, _STOP_RANGE))
        status = jnp.where(running, new_status, status)
        stop = jnp.where(running & (new_status != _RUNNING), t, stop)
        return (p, g, ostate, status, stop, t, aux)

    # One scan over the records; each entry first takes its number of steps
    # (0 for the initial record, k, ..., k, then the remainder). The step and
    # the metrics are traced once each, which keeps compile time down.
    counts = np.diff(_record_steps(steps, record_every), prepend=0).astype(np.int32)

    def chunk(carry, n):
        carry = jax.lax.fori_loop(0, n, lambda _, c: step(c), carry)
        rec, _ = path.metrics(carry[0], carry[1])
        if quantized:
            rec["move_sq"] = carry[-1][0]
        return carry, rec

    aux0 = (jnp.zeros((), dtype), jnp.zeros_like(w0)) if quantized else ()
    carry = (params, path.direction(params), opt_state, jnp.int32(_RUNNING), jnp.int32(-1), jnp.int32(0), aux0)
    carry, records = jax.lax.scan(chunk, carry, jnp.asarray(counts))
    p, g, _, status, stop, _, aux = carry
    _, last_split = path.metrics(p, g)
    if quantized:
        holds = path.direction_holds(p, aux[1], rho)
        code = _classify_quantized(records, status, holds, _reference_angle(teacher.w, path.quantizer), tol)
    else:
        code = _classify(records, last_split, status, rule, tol)
    # A run that never took a step returns its inputs bit for bit (the
    # reduced coordinates rebuild them only to rounding).
    moved = jnp.where(stop >= 0, stop > 1, steps > 0)
    v, w = jax.tree_util.tree_map(lambda a, b: jnp.where(moved, a, b), path.vectors(p), (v0, w0))
    out = dict(v=v, w=w, records=records, outcome_code=code, stop_step=stop)
    if quantized:
        out["w_float"] = jnp.where(moved, p[1], w0)
    for name in METRICS:
        out["final_" + name] = records[name][-1]
    return out


def _settle_code(loss, size, stationary, stat_code, status, tol):
    """Outcome code from a run's stationarity, its records and its stop status.

    Shared by every kind of run: ``stat_code`` names a stationary run;
    otherwise a settled loss with ``size`` (``|w|`` or a model's scale)
    drifting one way over the last quarter of the records is ``"unbounded"``
    (see :class:`Tolerances`), and the stop status overrides both.
    """
    n = loss.shape[0]
    q = (3 * (n - 1)) // 4
    settled = jnp.abs(loss[-1] - loss[q]) <= tol.loss_rtol * jnp.abs(loss[0]) + tol.grad_atol
    # A runaway keeps moving |w| one way: steadily over the last quarter of
    # the records and by more than w_drift in log; a slow approach to a
    # point far from the start moves it by much less.
    steps_w = jnp.diff(jnp.log(size[q:]))
    one_way = jnp.all(steps_w > 0) | jnp.all(steps_w < 0)
    drift = (jnp.abs(jnp.log(size[-1] / size[q])) > tol.w_drift) & one_way
    runaway = ~stationary & settled & drift & (q < n - 1)
    code = jnp.where(stationary, stat_code, jnp.where(runaway, _UNBOUNDED, _NOT_CONVERGED))
    code = jnp.where(status == _STOP_RANGE, _UNBOUNDED, code)
    code = jnp.where(status == _STOP_NONFINITE, _DIVERGED, code)
    return code.astype(jnp.int32)


def _classify(records, split, status, rule, tol):
    """Outcome code of one run (see :class:`Tolerances`)."""
    g_all = jnp.sqrt(records["dv_norm"] ** 2 + records["dw_norm"] ** 2)
    thr = tol.grad_rtol * jnp.max(jnp.where(jnp.isfinite(g_all), g_all, 0.0)) + tol.grad_atol
    small_v = split["gv"] <= thr
    small_t = split["g_tan"] <= thr
    small_r = (split["g_rad"] <= thr) | (rule == "normalized")
    stationary = small_v & small_t & small_r
    phi = records["angle"][-1]
    at0 = phi < tol.angle_tol
    atpi = phi > math.pi - tol.angle_tol
    by_angle = jnp.where(at0, _GLOBAL, jnp.where(atpi, _SPURIOUS, _SADDLE))
    # Where the theory knows every stationary point, the nearest one names the
    # outcome: near angle pi the pull shrinks like the gap squared, so a run
    # can be stationary to tolerance while still closing in on v_pi.
    pi_code = jnp.where(split["pi_is_min"], _SPURIOUS, _SADDLE)
    by_point = jnp.asarray([_GLOBAL, _SADDLE, _SADDLE], jnp.int32)[jnp.maximum(split["nearest"], 0)]
    by_point = jnp.where(split["nearest"] == 2, pi_code, by_point)
    stat_code = jnp.where(split["nearest"] >= 0, by_point, by_angle)
    return _settle_code(records["loss"], records["w_norm"], stationary, stat_code, status, tol)


def _reference_angle(ws, quantizer):
    """Angle of the best quantized direction to ``w*`` (exact for 1 and 2 bits),
    else of ``proj_Q(w*)`` (the teacher quantized by the same rule)."""
    if quantizer.bits <= 2:
        return best_quantized(ws, quantizer)[1]
    return nm.angle_cos_sin(quantizer(ws), ws)[0]


def _classify_quantized(records, status, holds, ref_angle, tol):
    """Outcome code of a run with a quantized filter (``quantizer`` given).

    The direction at a quantized point does not vanish, so stationarity is
    read off the iterates: ``|dv|`` fell to ``grad_rtol`` of its largest
    value, the quantized direction (its angle to ``w*``) did not change over
    the last quarter of the records, and it survives the float filter's
    continuing drift (``holds``, see ``_QuantizedPath.direction_holds``).
    Such a run is ``"global_min"`` when its
    direction is the best quantized one (:func:`stedyn.best_quantized`; for
    more than 2 bits: as close to ``w*`` as ``proj_Q(w*)``), else
    ``"spurious_min"``. Runaway and divergence as in :class:`Tolerances`.
    """
    phi = records["angle"]
    n = phi.shape[0]
    q = (3 * (n - 1)) // 4
    fixed = jnp.all(jnp.abs(phi[q:] - phi[-1]) <= _DIRECTION_ATOL) & (q < n - 1)
    gv = records["dv_norm"]
    small_v = gv[-1] <= tol.grad_rtol * jnp.max(jnp.where(jnp.isfinite(gv), gv, 0.0)) + tol.grad_atol
    stationary = fixed & small_v & holds
    best = phi[-1] <= ref_angle + _DIRECTION_ATOL
    stat_code = jnp.where(best, _GLOBAL, _SPURIOUS)
    return _settle_code(records["loss"], records["w_norm"], stationary, stat_code, status, tol)


# ---------------------------------------------------------------------------
# The public entry point


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns; arrays carry a leading batch axis if the run did.

    Attributes:
      v, w: final parameters, shapes ``(..., m)`` and ``(..., n)``.
      outcome: outcome name (``str``), or a NumPy array of names for a batch;
        one of :data:`OUTCOMES`.
      outcome_code: int index into :data:`OUTCOMES`, shape ``(...)``.
      stop_step: the step at which a run stopped early (non-finite values or
        ``|w|`` out of range), -1 if it ran every step.
      steps: NumPy int array of the recorded step numbers, shape (R,).
      trajectory: metric name -> array of shape ``(..., R)``; the names are
        :data:`METRICS`.
      final: metric name -> value at the final state, shape ``(...)``.
      w_float: the float filter ``w_f`` behind a quantized ``w`` (runs with
        a ``quantizer``), else ``None``.
      params: for a model run (``sd.run(model, params0, ...)``), the final
        parameters as a dict like ``params0``, and ``v``/``w`` are its
        ``"v"``/``"w"`` entries (``None`` if absent); ``None`` otherwise.
    """

    v: Any
    w: Any
    outcome: Any
    outcome_code: Any
    stop_step: Any
    steps: Any
    trajectory: dict
    final: dict
    w_float: Any = None
    params: Any = None


def _record_steps(steps, k):
    s = list(range(0, steps + 1, k))
    if s[-1] != steps:
        s.append(steps)
    return np.asarray(s, dtype=np.int64)


def _as_float_array(name, x, dtype):
    a = x if isinstance(x, jax.core.Tracer) else jnp.asarray(x)
    if isinstance(x, bool) or not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real number or an array of them; got {x!r}")
    return a.astype(dtype)


def _data_event_ndims(data):
    """Per-configuration ndim of each data field, to spot a batch axis."""
    if isinstance(data, Gaussian):
        return {"sigma": 0}
    if isinstance(data, Empirical):
        return {"Z": 3}
    if type(data).__name__ == "GaussianMixture":
        # Never batched in sd.run (its sigma may be per component); sweeps
        # build one mixture per configuration inside their own vmap.
        return {f: jnp.ndim(getattr(data, f)) for f in ("means", "sigma", "weights") if getattr(data, f) is not None}
    nd = getattr(data, "event_ndims", None)
    if nd is None:
        raise ValueError(f"data {type(data).__name__} does not say its field shapes (event_ndims)")
    return nd() if callable(nd) else nd


def _positive_all(name, x):
    c = _concrete(x)
    if c is not None and not (np.all(np.isfinite(c)) and np.all(c > 0)):
        raise ValueError(f"{name} must be finite and > 0 everywhere; got {c}")


@functools.lru_cache(maxsize=64)
def _compiled(in_axes_flags, treedef, statics):
    ste, rule, optimizer, steps, record_every, tol, quantizer = statics

    def one(*leaves):
        v0, w0, teacher, data, lr, r, rho = jax.tree_util.tree_unflatten(treedef, leaves)
        return simulate(
            v0, w0, teacher, data, lr, r, ste=ste, rule=rule, optimizer=optimizer,
            steps=steps, record_every=record_every, tol=tol, quantizer=quantizer, rho=rho,
        )

    if any(in_axes_flags):
        one = jax.vmap(one, in_axes=tuple(0 if f else None for f in in_axes_flags))
    return jax.jit(one)


def _check_loop_args(steps, record_every, tol, optimizer, lr):
    """Validate what every run shares; returns ``(steps, record_every)`` as ints."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    steps = int(steps)
    if record_every is None:
        record_every = max(1, steps // 200)
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise ValueError(f"record_every must be an int >= 1; got {record_every!r}")
    if not isinstance(tol, Tolerances):
        raise ValueError(f"tol must be an stedyn.Tolerances; got {type(tol).__name__}")
    if optimizer is not None:
        import optax

        is_tx = isinstance(optimizer, optax.GradientTransformation)
        if not is_tx and not callable(optimizer):
            raise ValueError(
                "optimizer must be None, an optax.GradientTransformation or a factory lr -> "
                f"GradientTransformation; got {type(optimizer).__name__}"
            )
        if is_tx and lr is not None:
            raise ValueError(
                "lr must be left out when optimizer is an optax.GradientTransformation (it owns its "
                "step size); pass a factory such as optax.adam to combine it with lr"
            )
    return steps, int(record_every)


def run(
    v0,
    w0,
    teacher=None,
    data=None,
    *,
    ste="crelu",
    r=1.0,
    lr=None,
    steps=1000,
    rule=None,
    optimizer=None,
    record_every=None,
    tol=Tolerances(),
    quantizer=None,
    rho=None,
):
    """Simulate coarse gradient descent (Yin et al. Algorithm 1) and its relatives.

    One compiled ``lax.scan``; metrics are recorded every ``record_every``
    steps by a nested scan, so long runs store little.

    Batches: ``v0`` (B, m), ``w0`` (B, n), ``teacher.v`` (B, m),
    ``teacher.w`` (B, n), ``lr`` (B,), ``r`` (B,), ``rho`` (B,) and
    ``Gaussian.sigma`` (B,) may each carry a leading batch axis (the others are shared); all B
    runs go through one compiled, vmapped call. A run that diverges stops at
    its last finite state and never affects the others.

    Args:
      v0: initial ``v``, shape (m,) or (B, m), floating.
      w0: initial ``w``, shape (n,) or (B, n), nonzero.
      teacher: :class:`stedyn.Teacher`.
      data: :class:`stedyn.Gaussian` or :class:`stedyn.GaussianMixture` (exact),
        or :class:`stedyn.Empirical` (sample means).
      ste: STE name or :class:`stedyn.STE` (ignored by ``rule="true"``).
      r: clip value, > 0 (``crelu``, ``clipped_identity``).
      lr: learning rate eta > 0; default 0.01. With ``optimizer`` a factory,
        it is passed to it; an optax ``GradientTransformation`` owns its step
        size, so ``lr`` must then be left out.
      steps: number of updates, >= 0.
      rule: ``"coarse"`` (Algorithm 1, the default), ``"true"`` (population gradient
        descent) or ``"normalized"`` (BCGD eq. 20: ``w`` renormalized to unit
        norm after every step).
      optimizer: ``None`` (plain step ``-lr * direction``), an optax
        ``GradientTransformation`` (e.g. ``optax.adam(1e-2)``, schedules
        included), or a factory called as ``optimizer(lr)`` (e.g.
        ``optax.adam`` or ``functools.partial(optax.sgd, momentum=0.9)``),
        which lets ``lr`` be batched. The optimizer acts on the rule's
        directions.
      record_every: record stride k >= 1; default ``max(1, steps // 200)``.
        Records are at steps 0, k, 2k, ... and the last step.
      tol: :class:`Tolerances` for the outcome.
      quantizer: ``None`` (float filter), or a :class:`stedyn.Quantizer` or
        bit width: quantize the filter (BCGD Sec. 3). The state then keeps a
        float filter ``w_f``; the network uses ``w = proj_Q(w_f)`` and
        ``w_f <- (1 - rho) w_f + rho w - eta g(w)`` with ``g`` the rule's
        direction at ``w``: BinaryConnect for ``rho = 0``, the blended
        update (BCGD eq. 10) for ``rho > 0``. The returned ``w`` is
        ``proj_Q(w_f)``; ``RunResult.w_float`` holds ``w_f``. Rules
        ``"coarse"`` and ``"true"`` only.
      rho: blending factor in [0, 1), shape () or (B,); default 0
        (BinaryConnect). Only with ``quantizer``.

    Models: ``run(model, params0, lr=..., steps=...)`` with a stedyn model
    (:class:`stedyn.ReLUNetwork`, :class:`stedyn.ReLUCNN`,
    :class:`stedyn.ReLUNeuron`) and a dict of initial parameters runs
    gradient descent on the model's exact population loss (``rule="true"``,
    the default there) through the same machinery; ``trajectory`` then holds
    the model's ``metric_names`` and ``params`` the final parameters (see
    :mod:`stedyn._modelrun`). ``teacher``, ``data``, ``ste`` and ``r`` do not
    apply.

    Returns:
      :class:`RunResult`. With a quantizer the run also records ``move_sq``, the
      squared length ``|v' - v|^2 + |w' - w|^2`` of the last step before each
      record (``w`` quantized): with ``record_every=1`` the loss trajectory
      and ``move_sq`` check the sufficient descent property (BCGD eq. 9).

    Raises:
      ValueError: bad shapes, names or values, naming the argument.
    """
    from ._models import Model

    if isinstance(v0, Model):
        if teacher is not None or data is not None:
            raise ValueError("run(model, params0, ...) takes no teacher or data: the model holds its teacher")
        if quantizer is not None or rho is not None:
            raise ValueError("quantizer and rho (BCGD quantized filter) apply to the STE-trained CNN only, "
                             "not to run(model, params0, ...)")
        from ._modelrun import run_model

        return run_model(v0, w0, lr=lr, steps=steps, rule=rule, optimizer=optimizer,
                         record_every=record_every, tol=tol)
    if rule is None:
        rule = "coarse"
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    if quantizer is not None:
        quantizer = resolve_quantizer(quantizer)
        if rule == "normalized":
            raise ValueError("quantizer works with rule 'coarse' or 'true'; got rule='normalized'")
    elif rho is not None:
        raise ValueError("rho (the blending factor of BCGD eq. 10) needs a quantizer; got quantizer=None")
    ste = resolve_ste(ste)
    if rule != "true":
        check_ste_for_data(ste, data)
    steps, record_every = _check_loop_args(steps, record_every, tol, optimizer, lr)
    if lr is None:
        lr = 0.01
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be an stedyn.Teacher; got {type(teacher).__name__}")

    v0 = _check_floating("v0", v0, jnp.ndim(v0) if jnp.ndim(v0) in (1, 2) else 1)
    w0 = _check_floating("w0", w0, jnp.ndim(w0) if jnp.ndim(w0) in (1, 2) else 1)
    dtype = jnp.result_type(v0.dtype, w0.dtype)
    tv = _check_floating("teacher.v", teacher.v, jnp.ndim(teacher.v) if jnp.ndim(teacher.v) in (1, 2) else 1)
    tw = _check_floating("teacher.w", teacher.w, jnp.ndim(teacher.w) if jnp.ndim(teacher.w) in (1, 2) else 1)
    lr = _as_float_array("lr", lr, dtype)
    r = _as_float_array("r", r, dtype)
    _positive_all("lr", lr)
    rho = _as_float_array("rho", 0.0 if rho is None else rho, dtype)
    c = _concrete(rho)
    if c is not None and not (np.all(np.isfinite(c)) and np.all((c >= 0) & (c < 1))):
        raise ValueError(f"rho must be in [0, 1) everywhere; got {c}")
    if ste.uses_r:
        _positive_all("r", r)
    teacher = Teacher(tv.astype(dtype), tw.astype(dtype), teacher.activation)

    event = {"v0": 1, "w0": 1, "teacher.v": 1, "teacher.w": 1, "lr": 0, "r": 0, "rho": 0}
    named = {"v0": v0, "w0": w0, "teacher.v": tv, "teacher.w": tw, "lr": lr, "r": r, "rho": rho}
    dnd = _data_event_ndims(data)
    for fname, nd in dnd.items():
        named[f"{type(data).__name__}.{fname}"] = getattr(data, fname)
        event[f"{type(data).__name__}.{fname}"] = nd
    batch = {}
    for name, x in named.items():
        nd = jnp.ndim(x)
        if nd == event[name] + 1:
            batch[name] = jnp.shape(x)[0]
        elif nd != event[name]:
            raise ValueError(
                f"{name} must have {event[name]} dimension(s), or {event[name] + 1} with a leading "
                f"batch axis; got shape {tuple(jnp.shape(x))}"
            )
    sizes = set(batch.values())
    if len(sizes) > 1:
        raise ValueError(f"batch axes disagree in size: {batch}")
    if sizes and 0 in sizes:
        raise ValueError("the batch axis must have at least one entry")

    # Validate one configuration for shapes/names, then every value.
    def first(x, name):
        return x[0] if name in batch else x

    one_data = jax.tree_util.tree_map(lambda x: x, data)
    if any(n.startswith(type(data).__name__ + ".") for n in batch):
        one_data = dataclasses.replace(
            data, **{f: getattr(data, f)[0] for f in dnd if f"{type(data).__name__}.{f}" in batch}
        )
    check_problem(
        first(v0, "v0"), first(w0, "w0"), Teacher(first(tv, "teacher.v"), first(tw, "teacher.w"), teacher.activation),
        one_data,
    )
    for name, x in (("w0", w0), ("teacher.w", tw)):
        c = _concrete(x)
        if c is not None and np.any(np.all(c == 0, axis=-1)):
            raise ValueError(f"{name} must be nonzero in every batch entry")
    if isinstance(data, Gaussian):
        _positive_all("Gaussian.sigma", data.sigma)
    else:
        check_data(one_data, v0.shape[-1], w0.shape[-1])

    leaves, treedef = jax.tree_util.tree_flatten((v0.astype(dtype), w0.astype(dtype), teacher, data, lr, r, rho))
    # Flags per leaf: recompute from the same names in flattening order.
    flag_tree = (
        "v0" in batch,
        "w0" in batch,
        Teacher("teacher.v" in batch, "teacher.w" in batch, teacher.activation),
        dataclasses.replace(data, **{f: f"{type(data).__name__}.{f}" in batch for f in dnd}),
        "lr" in batch,
        "r" in batch,
        "rho" in batch,
    )
    flags = tuple(bool(f) for f in jax.tree_util.tree_leaves(flag_tree))
    if len(flags) != len(leaves):  # pragma: no cover - a data class with unlisted fields
        raise ValueError(f"{type(data).__name__}: event_ndims must list every array field")
    fn = _compiled(flags, treedef, (ste, rule, optimizer, steps, record_every, tol, quantizer))
    out = fn(*leaves)
    code = np.asarray(out["outcome_code"])
    names = np.asarray(OUTCOMES)[code]
    return RunResult(
        v=out["v"],
        w=out["w"],
        outcome=str(names) if code.ndim == 0 else names,
        outcome_code=out["outcome_code"],
        stop_step=out["stop_step"],
        steps=_record_steps(steps, record_every),
        trajectory=out["records"],
        final={name: out["final_" + name] for name in METRICS},
        w_float=out.get("w_float"),
    )
