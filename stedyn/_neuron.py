"""Lee, Sim, Ye: magnitude/angle dynamics of single ReLU neurons, and their bounds.

For the ``depth``-layer single ReLU neuron (:class:`stedyn.ReLUNeuron`,
``m = depth - 1``) with balanced initialization and a balanced teacher
(``v_k = |w|``, ``v*_k = |w*| = v*``), unit Gaussian input, the gradient flow
reduces to two scalars, the magnitude ``v = |w|`` and the paper's angle
``phi = pi - theta`` (``theta`` the angle between ``w`` and ``w*``)::

    dv/dt   = -1/2 v^m (v^(m+1) - v*^(m+1) (sin phi - phi cos phi) / pi)     (eq. 6, 9)
    dphi/dt = v^(m-1) v*^(m+1) phi sin(phi) / (2 pi)                        (eq. 7, 10)

(one formula for Prop. 3.1, ``m = 0``, and Prop. 3.6, ``m >= 1``). With input
std ``sigma`` both right-hand sides carry a factor ``sigma^2``.

Bounds (``eps0 = 1 - (sin phi0 - phi0 cos phi0) / pi``):

* :func:`neuron_norm_bounds` -- Thm. 3.3 (``m = 0``), Thm. 3.8 (``m = 1``
  explicitly; ``m >= 2`` through its comparison ODE
  ``du/dt = -1/2 u^m (u^(m+1) - v*^(m+1) (1 - eps))``, which the paper solves
  implicitly with a hypergeometric function and we integrate), and their
  gradient-descent versions Thm. A.1 and A.3.
* :func:`neuron_angle_bounds` -- Thm. 3.4 (``m = 0``) and 3.9 (``m >= 1``),
  given ``r < |w(t)| < R``, and their gradient-descent versions Thm. A.2 and
  4.2.
* :func:`neuron_norm_range` -- a valid ``(r, R)`` from the magnitude bounds.

The gradient-descent versions replace every ``exp(-c t)`` by
``(1 - c eta)^T`` (Thm. 4.1); pass ``lr=eta`` and the step count as ``t``.

Note: the appendix's eq. 15 prints ``v^(m+1) + v*^(m+1)(1 - eps)``; the sign
must be minus (it is in eq. 9 and in the explicit ``m = 1`` solution).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def _check_depth(depth):
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1 (number of layers); got {depth!r}")
    return int(depth) - 1


def _check_lr(lr):
    if lr is None:
        return None
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)) or not (0 < lr):
        raise ValueError(f"lr must be a number > 0 or None (gradient flow); got {lr!r}")
    return float(lr)


def neuron_ode(norm, phi, *, v_star, depth, sigma=1.0):
    """Right-hand side ``(dv/dt, dphi/dt)`` of Prop. 3.1 / 3.6 (eq. 6-7, 9-10).

    Args:
      norm: ``v = |w|`` (> 0), array.
      phi: the paper's angle ``pi - theta`` in ``[0, pi]``, array.
      v_star: ``|w*|`` (= every ``v*_k``), > 0.
      depth: number of layers ``m + 1 >= 1``.
      sigma: input std; both rates scale with ``sigma^2``.

    Returns:
      ``(dv/dt, dphi/dt)``, arrays of the broadcast shape.
    """
    m = _check_depth(depth)
    s2 = sigma * sigma
    g = (jnp.sin(phi) - phi * jnp.cos(phi)) / math.pi
    dv = -0.5 * s2 * norm**m * (norm ** (m + 1) - v_star ** (m + 1) * g)
    dphi = s2 * norm ** (m - 1) * v_star ** (m + 1) * phi * jnp.sin(phi) / (2.0 * math.pi)
    return dv, dphi


def neuron_ode_solve(norm0, phi0, times, *, v_star, depth, sigma=1.0, rtol=None, atol=None):
    """Integrate the two-scalar system of :func:`neuron_ode` (Dormand-Prince 5(4)).

    Args:
      norm0, phi0: initial ``|w0|`` and ``phi0 = pi - theta0`` (scalars or
        arrays of one shape; batched elementwise).
      times: increasing record times starting at 0, shape (R,).
      v_star, depth, sigma: as in :func:`neuron_ode`.
      rtol, atol: local error tolerances (defaults by dtype, as :func:`stedyn.flow`).

    Returns:
      ``(norm, phi)``, each of shape ``norm0.shape + (R,)``.
    """
    from ._modelrun import dopri5

    _check_depth(depth)
    norm0 = jnp.asarray(norm0)
    phi0 = jnp.asarray(phi0).astype(norm0.dtype)
    dtype = norm0.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"norm0 must be floating point; got {dtype}")
    times = np.asarray(times, np.float64)
    if times.ndim != 1 or times.size < 2 or times[0] != 0 or not np.all(np.diff(times) > 0):
        raise ValueError("times must be a 1-D increasing array starting at 0 with at least 2 entries")
    f64 = jnp.finfo(dtype).bits == 64
    rtol = rtol if rtol is not None else (1e-10 if f64 else 1e-5)
    atol = atol if atol is not None else (1e-12 if f64 else 1e-7)
    ts = jnp.asarray(times, dtype)

    def one(a, b):
        y0 = (a, b)
        f = lambda y: neuron_ode(y[0], y[1], v_star=v_star, depth=depth, sigma=sigma)  # noqa: E731
        rec = lambda y, fy: {"v": y[0], "phi": y[1]}  # noqa: E731
        _, recs, _, _, _ = dopri5(f, y0, ts, rtol=rtol, atol=atol, h0=1e-3 * float(times[-1]), max_steps=100_000, record=rec)
        return recs["v"], recs["phi"]

    shape = jnp.broadcast_shapes(norm0.shape, phi0.shape)
    a = jnp.broadcast_to(norm0, shape).reshape(-1)
    b = jnp.broadcast_to(phi0, shape).reshape(-1)
    v, p = jax.jit(jax.vmap(one))(a, b)
    return v.reshape(shape + (-1,)), p.reshape(shape + (-1,))


def _times(t):
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.floating) else t.astype(jnp.result_type(float))


def _decay(c, t, lr):
    """``exp(-c t)`` (flow) or ``(1 - c lr)^t`` (gradient descent, Thm. 4.1)."""
    if lr is None:
        return jnp.exp(-c * t)
    return (1.0 - c * lr) ** t


def _eps0(phi0):
    return 1.0 - (jnp.sin(phi0) - phi0 * jnp.cos(phi0)) / math.pi


def neuron_norm_bounds(t, norm0, phi0, *, v_star, depth, lr=None):
    """Lower and upper bounds on ``|w(t)|`` (Thm. 3.3, 3.8; GD: Thm. A.1, A.3).

    Args:
      t: times (flow) or step counts ``T`` (with ``lr``), array. For
        ``depth >= 3`` (flow only) a 1-D increasing array starting at 0.
      norm0: ``|w0|`` (= every ``v_k(0)``, balanced), > 0.
      phi0: ``pi - theta0`` in ``(0, pi)``.
      v_star: ``|w*|``, > 0.
      depth: number of layers ``m + 1``.
      lr: ``None`` for gradient flow, else the learning rate ``eta`` of the
        gradient-descent version (``depth <= 2``; the paper gives none for
        ``depth >= 3``).

    Returns:
      ``(lo, hi)``, arrays shaped like ``t``.

    Raises:
      ValueError: ``lr`` with ``depth >= 3``, bad ``depth`` or ``lr``.
    """
    m = _check_depth(depth)
    lr = _check_lr(lr)
    t = _times(t)
    eps0 = _eps0(phi0)
    vs, v0 = v_star, norm0
    if m == 0:
        E = _decay(0.5, t, lr)
        return (1 - eps0) * (1 - E) * vs + v0 * E, (1 - E) * vs + v0 * E
    if m == 1:
        E1 = _decay((1 - eps0) * vs * vs, t, lr)
        E2 = _decay(vs * vs, t, lr)
        lo = vs * jnp.sqrt((1 - eps0) / (1 - (1 - (1 - eps0) * (vs / v0) ** 2) * E1))
        hi = vs * jnp.sqrt(1.0 / (1 - (1 - (vs / v0) ** 2) * E2))
        return lo, hi
    if lr is not None:
        raise ValueError("lr: the paper gives no gradient-descent magnitude bound for depth >= 3; use lr=None")
    times = np.asarray(t, np.float64)
    if times.ndim != 1 or times.size < 2 or times[0] != 0 or not np.all(np.diff(times) > 0):
        raise ValueError("t must be a 1-D increasing array starting at 0 for depth >= 3 (the bound is an ODE solution)")
    dtype = jnp.result_type(jnp.asarray(norm0).dtype, float)
    fn = _comparison_solver(m, tuple(times.tolist()), jnp.dtype(dtype).name)
    v0 = jnp.asarray(v0, dtype)
    vs = jnp.asarray(vs, dtype)
    return fn(v0, jnp.asarray(eps0, dtype), vs), fn(v0, jnp.zeros((), dtype), vs)


@functools.lru_cache(maxsize=32)
def _comparison_solver(m, times, dtype):
    """Compiled ``u(t; eps)`` of Thm. 3.8: ``du/dt = -1/2 u^m (u^(m+1) - v*^(m+1) (1 - eps))``."""
    from ._modelrun import dopri5

    f64 = jnp.finfo(dtype).bits == 64
    ts = np.asarray(times)

    def u(v0, eps, vs):
        f = lambda y: -0.5 * y**m * (y ** (m + 1) - vs ** (m + 1) * (1 - eps))  # noqa: E731
        _, recs, _, _, _ = dopri5(f, v0, jnp.asarray(ts, dtype), rtol=1e-10 if f64 else 1e-6,
                                  atol=1e-12 if f64 else 1e-8, h0=1e-3 * float(ts[-1]),
                                  max_steps=100_000, record=lambda y, fy: {"u": y})
        return recs["u"]

    return jax.jit(u)


def neuron_norm_range(norm0, phi0, *, v_star, depth):
    """``(r, R)`` with ``r <= |w(t)| <= R`` for all ``t``, from the magnitude bounds.

    The lower bound of Thm. 3.3/3.8 moves monotonically from ``|w0|`` to
    ``v* (1 - eps0)^(1/(m+1))`` and the upper one from ``|w0|`` to ``v*``, so
    ``r = min(|w0|, v* (1 - eps0)^(1/(m+1)))`` and ``R = max(|w0|, v*)``:
    constants that Thm. 3.4/3.9 accept.
    """
    m = _check_depth(depth)
    eps0 = _eps0(phi0)
    r = jnp.minimum(norm0, v_star * (1 - eps0) ** (1.0 / (m + 1)))
    R = jnp.maximum(norm0, v_star)
    return r, R


def neuron_angle_bounds(t, phi0, *, v_star, depth, r, R, lr=None):
    """Lower and upper bounds on ``phi(t) = pi - theta(t)`` (Thm. 3.4, 3.9; GD: A.2, 4.2).

    Given ``r < |w(t)| < R`` along the run, ``csc(phi) dphi/dt`` lies between
    ``c_lo = phi0 v*^(m+1) min(r^(m-1), R^(m-1)) / (2 pi)`` and
    ``c_hi = v*^(m+1) max(r^(m-1), R^(m-1)) / 2`` (for ``m = 0`` these are
    Thm. 3.4's ``|w*| phi0 / (2 pi R)`` and ``|w*| / (2 r)``; for ``m >= 1``
    Thm. 3.9's ``r^(m-1)`` and ``R^(m-1)``), so::

        pi - 2 cot(phi0/2) E(c_lo) < phi(t) < pi - 2 cot(phi0/2) E(c_hi) + 2/3 cot^3(phi0/2) E(3 c_hi)

    with ``E(c) = exp(-c t)``, or ``(1 - c eta)^T`` for gradient descent.

    Args:
      t: times, or step counts with ``lr``.
      phi0: ``pi - theta0`` in ``(0, pi)``.
      v_star: ``|w*|``. depth: layers ``m + 1``.
      r, R: bounds on ``|w(t)|`` (e.g. from :func:`neuron_norm_range`).
      lr: ``None`` (flow) or the learning rate.

    Returns:
      ``(lo, hi)``, arrays shaped like ``t``.
    """
    m = _check_depth(depth)
    lr = _check_lr(lr)
    t = _times(t)
    a, b = r ** (m - 1), R ** (m - 1)
    c_lo = phi0 * v_star ** (m + 1) * jnp.minimum(a, b) / (2 * math.pi)
    c_hi = 0.5 * v_star ** (m + 1) * jnp.maximum(a, b)
    cot = 1.0 / jnp.tan(0.5 * phi0)
    lo = math.pi - 2 * cot * _decay(c_lo, t, lr)
    hi = math.pi - 2 * cot * _decay(c_hi, t, lr) + (2.0 / 3.0) * cot**3 * _decay(3 * c_hi, t, lr)
    return lo, hi
