"""Gradient descent (:func:`stedyn.run`) and gradient flow (:func:`flow`) for models.

``sd.run(model, params0, lr=..., steps=...)`` lands in :func:`run_model`:
the same recipe as the CNN path of :mod:`stedyn._dynamics` (one compiled
``lax.scan`` over the records with a ``fori_loop`` of ``k`` steps inside; the
direction at the current state carried along and reused by the records; a
step that produces NaN/inf stops the run at its last good state; a run whose
size leaves ``[1/w_ratio, w_ratio]`` times its start stops as
``"unbounded"``; batches along a leading axis vmapped, each run independent),
on any :class:`stedyn._models.Model`.

:func:`flow` integrates the gradient flow ``dp/dt = -grad L(p)`` with the
Dormand-Prince 5(4) pair (adaptive steps, error per step below
``atol + rtol |p|``), landing exactly on every record time.

Outcomes (:data:`stedyn.OUTCOMES`, rules in :class:`stedyn.Tolerances`): with
``G`` the largest recorded gradient norm, the final state is *stationary* when
its gradient norm is ``<= grad_rtol G + grad_atol``; then a relative distance
to the teacher (``teacher_dist``) below ``angle_tol`` is ``"global_min"``,
otherwise the loss Hessian (autodiff of the exact loss) decides: a negative
eigenvalue below ``-1e-6`` times the largest ``|eigenvalue|`` is
``"saddle"``, else ``"spurious_min"``. ``"unbounded"``, ``"diverged"`` and
``"not_converged"`` are as for the CNN (a size that settles while drifting
one way is a runaway).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._models import Model

_GLOBAL, _SPURIOUS, _SADDLE, _UNBOUNDED, _DIVERGED, _NOT_CONVERGED = range(6)
_RUNNING, _STOP_NONFINITE, _STOP_RANGE, _STOP_MAXSTEPS = 0, 1, 2, 3
HESS_RTOL = 1e-6


def _tree_finite(p):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(p)]))


def _sel(take, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, old)


def classify(model, records, p, status, tol, size_key="size"):
    """Outcome code of one run from its records and final params (see module doc)."""
    g = records["grad_norm"]
    thr = tol.grad_rtol * jnp.max(jnp.where(jnp.isfinite(g), g, 0.0)) + tol.grad_atol
    stationary = g[-1] <= thr
    dist = records["teacher_dist"][-1]
    at_teacher = dist <= tol.angle_tol
    hess = model.hessian_min_ratio(p)
    stat_code = jnp.where(at_teacher, _GLOBAL, jnp.where(hess < -HESS_RTOL, _SADDLE, _SPURIOUS))
    from ._dynamics import _settle_code

    return _settle_code(records["loss"], records[size_key], stationary, stat_code, status, tol)


def _records(model, p, g):
    rec = model.metrics(p, g)
    lo, _ = model.norms(p)
    rec = dict(rec)
    rec["size"] = lo
    return rec


def simulate_model(model, params0, lr, *, optimizer, steps, record_every, tol):
    """Gradient descent on ``model`` from ``params0``; pure, traceable (vmap it).

    Returns a dict with ``params`` (final), ``records`` (metric -> (R,)),
    ``outcome_code`` and ``stop_step``.
    """
    from ._dynamics import _make_optimizer, _record_steps

    opt = _make_optimizer(optimizer, lr)
    dtype = jax.tree_util.tree_leaves(params0)[0].dtype
    with jax.numpy_dtype_promotion("standard"):
        ostate = opt.init(params0) if opt is not None else ()
    lo0, hi0 = model.norms(params0)

    def step(carry):
        p, g, ostate, status, stop, t = carry
        t = t + 1
        if opt is None:
            p1, ostate1 = jax.tree_util.tree_map(lambda x, d: x - lr * d, p, g), ostate
        else:
            with jax.numpy_dtype_promotion("standard"):
                upd, ostate1 = opt.update(g, ostate, p)
            p1 = jax.tree_util.tree_map(lambda x, u: x + u.astype(dtype), p, upd)
        lo, hi = model.norms(p1)
        finite = _tree_finite(p1) & (lo > 0)
        in_range = (hi <= hi0 * tol.w_ratio) & (lo >= lo0 / tol.w_ratio)
        running = status == _RUNNING
        take = running & finite
        g1 = model.grad(p1)
        finite = finite & _tree_finite(g1)
        take = running & finite
        p, g, ostate = _sel(take, (p1, g1, ostate1), (p, g, ostate))
        new_status = jnp.where(~finite, _STOP_NONFINITE, jnp.where(in_range, _RUNNING, _STOP_RANGE))
        status = jnp.where(running, new_status, status)
        stop = jnp.where(running & (new_status != _RUNNING), t, stop)
        return (p, g, ostate, status, stop, t)

    counts = np.diff(_record_steps(steps, record_every), prepend=0).astype(np.int32)

    def chunk(carry, n):
        carry = jax.lax.fori_loop(0, n, lambda _, c: step(c), carry)
        return carry, _records(model, carry[0], carry[1])

    carry = (params0, model.grad(params0), ostate, jnp.int32(_RUNNING), jnp.int32(-1), jnp.int32(0))
    carry, records = jax.lax.scan(chunk, carry, jnp.asarray(counts))
    p, g, _, status, stop, _ = carry
    code = classify(model, records, p, status, tol)
    return dict(params=p, records=records, outcome_code=code, stop_step=stop)


# ---------------------------------------------------------------------------
# Dormand-Prince 5(4)

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_BSTAR = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b - bs for b, bs in zip(_B, _BSTAR))


def _axpy(y, h, coeffs, ks):
    """``y + h sum_i coeffs[i] ks[i]`` over pytrees (zero coefficients skipped)."""
    def one(yl, *kl):
        acc = yl
        for c, k in zip(coeffs, kl):
            if c != 0.0:
                acc = acc + (h * c) * k
        return acc

    return jax.tree_util.tree_map(one, y, *ks)


def dopri5(f, y0, ts, *, rtol, atol, h0, max_steps, record):
    """Integrate ``dy/dt = f(y)`` (autonomous, pytree ``y``) through the times ``ts``.

    Adaptive Dormand-Prince 5(4) with FSAL and the usual step controller
    (safety 0.9, factor in [0.2, 5]); every record time is hit exactly.
    ``record(y, fy)`` maps a state and its derivative to a dict of scalars.

    Returns ``(y_final, records (R,), status, stop_time, n_steps)``; ``status``
    is 1 if a step produced NaN/inf (the state is the last finite one, and
    the records after it repeat it), 3 if ``max_steps`` attempts ran out.
    """
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    f0 = f(y0)
    ts = jnp.asarray(ts, dtype)

    def err_norm(y, y1, err):
        num = 0.0
        n = 0
        for a, b, e in zip(jax.tree_util.tree_leaves(y), jax.tree_util.tree_leaves(y1), jax.tree_util.tree_leaves(err)):
            sc = atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b))
            num = num + jnp.sum((e / sc) ** 2)
            n += e.size
        return jnp.sqrt(num / n)

    def interval(carry, t_target):
        def cond(c):
            y, fy, t, h, status, stop, nst = c
            return (t < t_target) & (status == _RUNNING)

        def body(c):
            y, fy, t, h, status, stop, nst = c
            last = h >= t_target - t
            hh = jnp.where(last, t_target - t, h)
            ks = [fy]
            for i in range(1, 7):
                yi = _axpy(y, hh, _A[i], ks)
                ks.append(f(yi))
            y1 = yi  # stage 7 is the 5th-order solution (FSAL)
            f1 = ks[6]
            err = _axpy(jax.tree_util.tree_map(jnp.zeros_like, y), hh, _E, ks)
            en = err_norm(y, y1, err)
            ok_num = _tree_finite(y1) & _tree_finite(f1) & jnp.isfinite(en)
            accept = ok_num & (en <= 1.0)
            fac = jnp.where(
                ok_num, jnp.clip(0.9 * jnp.where(en > 0, en, 1e-10) ** (-0.2), 0.2, 5.0), 0.2
            ).astype(dtype)
            h_new = hh * fac
            # the step proposal survives a clipped last step unless it failed
            h_next = jnp.where(accept & last, jnp.maximum(h, h_new), h_new)
            t1 = jnp.where(last, t_target, t + hh)
            y, fy = _sel(accept, (y1, f1), (y, fy))
            t = jnp.where(accept, t1, t)
            nst = nst + 1
            tiny = hh <= 16 * jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(t), 1.0)
            bad = (~ok_num & tiny)
            status = jnp.where(bad, _STOP_NONFINITE, jnp.where(nst >= max_steps, _STOP_MAXSTEPS, status))
            stop = jnp.where((status != _RUNNING) & (stop < 0), t, stop)
            return (y, fy, t, h_next, status, stop, nst)

        carry = jax.lax.while_loop(cond, body, carry)
        return carry, record(carry[0], carry[1])

    t0 = ts[0]
    carry = (y0, f0, t0, jnp.asarray(h0, dtype), jnp.int32(_RUNNING), jnp.full((), -1.0, dtype), jnp.int32(0))
    rec0 = record(y0, f0)
    carry, recs = jax.lax.scan(interval, carry, ts[1:])
    recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)
    y, _, _, _, status, stop, nst = carry
    return y, recs, status, stop, nst


def simulate_flow(model, params0, ts, *, rtol, atol, h0, max_steps, tol):
    """Gradient flow of one configuration (traceable); see :func:`flow`."""
    neg = lambda p: jax.tree_util.tree_map(jnp.negative, model.grad(p))  # noqa: E731

    def record(p, fp):
        g = jax.tree_util.tree_map(jnp.negative, fp)
        return _records(model, p, g)

    p, recs, status, stop, nst = dopri5(neg, params0, ts, rtol=rtol, atol=atol, h0=h0, max_steps=max_steps, record=record)
    code = classify(model, recs, p, jnp.where(status == _STOP_MAXSTEPS, _RUNNING, status), tol)
    return dict(params=p, records=recs, outcome_code=code, stop_time=stop, n_steps=nst, status=status)


# ---------------------------------------------------------------------------
# Public entry points


def _batch_flags(model, params, extra):
    """Find leading batch axes: flags per leaf of ``(params, model, *extra)``."""
    nd_tree = (model.param_event_ndims(params), model.field_event_ndims()) + tuple(0 for _ in extra)
    leaves = jax.tree_util.tree_leaves((params, model) + tuple(extra))
    nds = jax.tree_util.tree_leaves(nd_tree)
    if len(leaves) != len(nds):  # pragma: no cover - a model with unlisted fields
        raise ValueError(f"{type(model).__name__}: field_event_ndims must list every array field")
    flags, sizes = [], {}
    names = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path((params, model) + tuple(extra))[0]]
    for name, x, nd in zip(names, leaves, nds):
        d = jnp.ndim(x)
        if d == nd + 1:
            flags.append(True)
            sizes[name] = jnp.shape(x)[0]
        elif d == nd:
            flags.append(False)
        else:
            raise ValueError(
                f"{name} must have {nd} dimension(s), or {nd + 1} with a leading batch axis; got shape {tuple(jnp.shape(x))}"
            )
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch axes disagree in size: {sizes}")
    if sizes and 0 in sizes.values():
        raise ValueError("the batch axis must have at least one entry")
    return tuple(flags), bool(sizes)


def _prepare(model, params0, extra):
    if not isinstance(model, Model):
        raise ValueError(f"model must be a stedyn model (ReLUNetwork, ReLUCNN, ReLUNeuron); got {type(model).__name__}")
    if not isinstance(params0, dict):
        raise ValueError(f"params0 must be a dict of arrays; got {type(params0).__name__}")
    params0 = {k: (jnp.asarray(x) if not isinstance(x, jax.core.Tracer) else x) for k, x in params0.items()}
    flags, batched = _batch_flags(model, params0, extra)
    dtypes = [x.dtype for x in params0.values()]
    for k, x in params0.items():
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"params0[{k!r}] must be a floating-point array (float32 or float64); got dtype {x.dtype}")
    dtype = jnp.result_type(*dtypes)
    params0 = {k: x.astype(dtype) for k, x in params0.items()}
    # validate one configuration (and every value of the batched leaves)
    leaves, treedef = jax.tree_util.tree_flatten((params0, model) + tuple(extra))
    first = [x[0] if f else x for x, f in zip(leaves, flags)]
    p1, m1 = jax.tree_util.tree_unflatten(treedef, first)[:2]
    m1.check_params(p1)
    for k, x in params0.items():
        c = None if isinstance(x, jax.core.Tracer) else np.asarray(x)
        if c is not None and not np.all(np.isfinite(c)):
            raise ValueError(f"params0[{k!r}] contains NaN or inf; all entries must be finite")
    if "w" in params0 and not isinstance(params0["w"], jax.core.Tracer):
        c = np.asarray(params0["w"])
        if np.any(np.all(c == 0, axis=-1)):
            raise ValueError("params0['w'] must have no zero row in any batch entry")
    # cast the model's array fields to the params dtype
    model = jax.tree_util.tree_map(lambda x: jnp.asarray(x).astype(dtype), model)
    return model, params0, dtype


@functools.lru_cache(maxsize=64)
def _compiled_gd(flags, treedef, statics):
    optimizer, steps, record_every, tol = statics

    def one(*leaves):
        params, model, lr = jax.tree_util.tree_unflatten(treedef, leaves)
        return simulate_model(model, params, lr, optimizer=optimizer, steps=steps, record_every=record_every, tol=tol)

    if any(flags):
        one = jax.vmap(one, in_axes=tuple(0 if f else None for f in flags))
    return jax.jit(one)


def run_model(model, params0, *, lr, steps, rule, optimizer, record_every, tol):
    """:func:`stedyn.run` for a model (``sd.run(model, params0, ...)``)."""
    from ._dynamics import OUTCOMES, RunResult, _as_float_array, _check_loop_args, _positive_all, _record_steps

    if rule not in (None, "true"):
        raise ValueError(f"rule must be 'true' (gradient descent on the exact loss) for a model; got {rule!r}")
    steps, record_every = _check_loop_args(steps, record_every, tol, optimizer, lr)
    model, params0, dtype = _prepare(model, params0, ())
    lr = _as_float_array("lr", 0.01 if lr is None else lr, dtype)
    _positive_all("lr", lr)
    if jnp.ndim(lr) > 1:
        raise ValueError(f"lr must be a scalar or have one batch axis; got shape {tuple(jnp.shape(lr))}")
    flags, _ = _batch_flags(model, params0, (lr,))
    leaves, treedef = jax.tree_util.tree_flatten((params0, model, lr))
    fn = _compiled_gd(flags, treedef, (optimizer, steps, record_every, tol))
    out = fn(*leaves)
    code = np.asarray(out["outcome_code"])
    names = np.asarray(OUTCOMES)[code]
    recs = {k: v for k, v in out["records"].items() if k != "size"}
    p = out["params"]
    return RunResult(
        v=p.get("v"), w=p.get("w"), outcome=str(names) if code.ndim == 0 else names, outcome_code=out["outcome_code"],
        stop_step=out["stop_step"], steps=_record_steps(steps, record_every), trajectory=recs,
        final={k: v[..., -1] for k, v in recs.items()}, params=p,
    )


@dataclasses.dataclass(frozen=True)
class FlowResult:
    """What :func:`flow` returns; arrays carry a leading batch axis if the run did.

    Attributes:
      params: final parameters (dict, like ``params0``).
      times: NumPy array of the record times, shape (R,).
      trajectory: metric name -> array (..., R); the names are the model's
        ``metric_names``.
      final: metric name -> value at the final time.
      outcome, outcome_code: as for :class:`stedyn.RunResult`.
      stop_time: the time a run stopped early (a non-finite derivative), -1
        if it reached the end.
      n_steps: integrator steps attempted (accepted and rejected).
      exhausted: True where ``max_steps`` ran out before the end (the records
        after that repeat the last state).
    """

    params: Any
    times: Any
    trajectory: dict
    final: dict
    outcome: Any
    outcome_code: Any
    stop_time: Any
    n_steps: Any
    exhausted: Any


@functools.lru_cache(maxsize=64)
def _compiled_flow(flags, treedef, statics):
    rtol, atol, h0, max_steps, tol = statics

    def one(*leaves):
        params, model, ts = jax.tree_util.tree_unflatten(treedef, leaves)
        return simulate_flow(model, params, ts, rtol=rtol, atol=atol, h0=h0, max_steps=max_steps, tol=tol)

    if any(flags):
        one = jax.vmap(one, in_axes=tuple(0 if f else None for f in flags))
    return jax.jit(one)


def flow(model, params0, t_end=None, *, times=None, num=201, rtol=None, atol=None, h0=None, max_steps=100_000, tol=None):
    """Gradient flow ``dp/dt = -grad L(p)`` of a model (Lee-Sim-Ye eq. 2).

    Integrated with an adaptive Dormand-Prince 5(4) method in ``lax`` (one
    compiled ``lax.scan`` over the record times, a ``while_loop`` of steps
    inside, vmapped over a leading batch axis like :func:`stedyn.run`), on
    the model's exact gradient.

    Args:
      model: a stedyn model (:class:`stedyn.ReLUNeuron`, ``ReLUNetwork``, ``ReLUCNN``).
      params0: initial parameters (dict of arrays), optionally batched.
      t_end: final time > 0; records at ``num`` equally spaced times from 0.
      times: instead of ``t_end``/``num``: increasing record times starting
        at 0, shape (R,).
      rtol, atol: local error tolerances; default ``1e-10, 1e-12`` (float64)
        or ``1e-5, 1e-7`` (float32).
      h0: first step size; default ``1e-3 * t_end``.
      max_steps: cap on attempted steps per run.
      tol: :class:`stedyn.Tolerances` for the outcome.

    Returns:
      :class:`FlowResult`.

    Raises:
      ValueError: bad arguments, naming them.
    """
    from ._dynamics import OUTCOMES, Tolerances

    tol = Tolerances() if tol is None else tol
    if not isinstance(tol, Tolerances):
        raise ValueError(f"tol must be an stedyn.Tolerances; got {type(tol).__name__}")
    if (t_end is None) == (times is None):
        raise ValueError("give exactly one of t_end (with num) or times")
    if times is None:
        if isinstance(t_end, bool) or not isinstance(t_end, (int, float, np.floating, np.integer)) or not t_end > 0:
            raise ValueError(f"t_end must be a number > 0; got {t_end!r}")
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
            raise ValueError(f"num must be an int >= 2; got {num!r}")
        times = np.linspace(0.0, float(t_end), int(num))
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 2 or times[0] != 0 or not np.all(np.diff(times) > 0):
        raise ValueError("times must be a 1-D increasing array starting at 0 with at least 2 entries")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1; got {max_steps!r}")
    model, params0, dtype = _prepare(model, params0, ())
    f64 = jnp.finfo(dtype).bits == 64
    rtol = float(rtol if rtol is not None else (1e-10 if f64 else 1e-5))
    atol = float(atol if atol is not None else (1e-12 if f64 else 1e-7))
    for name, x in (("rtol", rtol), ("atol", atol)):
        if not (np.isfinite(x) and x > 0):
            raise ValueError(f"{name} must be a finite number > 0; got {x!r}")
    h0 = float(h0 if h0 is not None else 1e-3 * times[-1])
    if not (np.isfinite(h0) and h0 > 0):
        raise ValueError(f"h0 must be a finite number > 0; got {h0!r}")
    ts = jnp.asarray(times, dtype)
    flags, _ = _batch_flags(model, params0, ())
    flags = flags + (False,)
    leaves, treedef = jax.tree_util.tree_flatten((params0, model, ts))
    fn = _compiled_flow(flags, treedef, (rtol, atol, h0, int(max_steps), tol))
    out = fn(*leaves)
    code = np.asarray(out["outcome_code"])
    names = np.asarray(OUTCOMES)[code]
    recs = {k: v for k, v in out["records"].items() if k != "size"}
    return FlowResult(
        params=out["params"], times=times, trajectory=recs, final={k: v[..., -1] for k, v in recs.items()},
        outcome=str(names) if code.ndim == 0 else names, outcome_code=out["outcome_code"],
        stop_time=out["stop_time"], n_steps=out["n_steps"], exhausted=out["status"] == _STOP_MAXSTEPS,
    )
