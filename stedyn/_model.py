"""Teacher and input distributions: frozen dataclasses registered as pytrees."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._activations import Activation, resolve_activation


def _register(cls, data, meta=()):
    return jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=list(meta))


@dataclasses.dataclass(frozen=True)
class Teacher:
    """The teacher network ``y*(Z) = v*^T f(Z w*)``.

    Attributes:
      v: second-layer weights ``v*``, shape (m,).
      w: filter ``w*``, shape (n,), nonzero.
      activation: ``"binary" | "relu" | "tanh" | "sin" | "linear"`` or an
        :class:`stedyn.Activation` instance (static, not traced).
    """

    v: Any
    w: Any
    activation: Any = "relu"

    def __post_init__(self):
        # Static field only: leaves may be tracers or placeholders during
        # pytree operations, so value checks happen in the API functions.
        resolve_activation(self.activation)

    @property
    def act(self) -> Activation:
        return resolve_activation(self.activation)


_register(Teacher, ("v", "w"), ("activation",))


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Input rows with i.i.d. ``N(0, sigma^2)`` entries (the papers' setting).

    Attributes:
      sigma: input standard deviation, positive scalar (may be traced/batched).
    """

    sigma: Any = 1.0


_register(Gaussian, ("sigma",))


@dataclasses.dataclass(frozen=True)
class Empirical:
    """A finite sample of inputs; expectations become sample means.

    Attributes:
      Z: array of shape (N, m, n).
    """

    Z: Any


_register(Empirical, ("Z",))


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Gaussian-mixture input (the Proper-STE paper's Sec. 4, Fig. 1).

    A component ``k`` is drawn with probability ``weights[k]``; given it, the
    entries of ``Z`` are independent, ``Z_ij ~ N(means[k, i, j], sigma_k^2)``.
    Rows are then independent given the component, so the population loss
    and gradients are exact (:mod:`stedyn._mixture`).

    Attributes:
      means: array of shape (K, m, n), the component means of ``Z``.
      sigma: positive scalar, or shape (K,) for one std per component.
      weights: shape (K,), nonnegative, summing to 1; ``None`` (default) for
        equal weights ``1/K``.

    Computations run in the floating dtype of ``v``; the arrays here are cast
    to it.
    """

    means: Any
    sigma: Any = 1.0
    weights: Any = None

    @property
    def num_components(self) -> int:
        return int(jnp.shape(self.means)[0])


_register(GaussianMixture, ("means", "sigma", "weights"))


# ---------------------------------------------------------------------------
# Validation. Shape and name checks are static and always run (also while
# tracing). Value checks need concrete numbers and are skipped for tracers.


def _concrete(x):
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # pragma: no cover - exotic array types
        return None


def _check_floating(name, x, ndim):
    x = jnp.asarray(x) if not isinstance(x, jax.core.Tracer) else x
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array (float32 or float64); got dtype {x.dtype}")
    cx = _concrete(x)
    if cx is not None and not np.all(np.isfinite(cx)):
        raise ValueError(f"{name} contains NaN or inf; all entries must be finite")
    return x


def _check_nonzero(name, x):
    cx = _concrete(x)
    if cx is not None and not np.any(cx != 0):
        raise ValueError(f"{name} must be a nonzero vector (the angle to w* is undefined at 0)")


def _check_positive(name, x):
    cx = _concrete(x)
    if cx is not None and not np.all(cx > 0):
        raise ValueError(f"{name} must be > 0; got {cx}")


def check_problem(v, w, teacher, data):
    """Validate one configuration; returns arrays ``(v, w)``.

    Raises:
      ValueError: naming the offending argument and the allowed values.
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be an stedyn.Teacher; got {type(teacher).__name__}")
    v = _check_floating("v", v, 1)
    w = _check_floating("w", w, 1)
    vs = _check_floating("teacher.v", teacher.v, 1)
    ws = _check_floating("teacher.w", teacher.w, 1)
    if v.shape != vs.shape:
        raise ValueError(f"v and teacher.v must have the same shape (m,); got {v.shape} and {vs.shape}")
    if w.shape != ws.shape:
        raise ValueError(f"w and teacher.w must have the same shape (n,); got {w.shape} and {ws.shape}")
    if v.shape[0] < 1 or w.shape[0] < 1:
        raise ValueError(f"m and n must be >= 1; got m={v.shape[0]}, n={w.shape[0]}")
    _check_nonzero("w", w)
    _check_nonzero("teacher.w", ws)
    check_data(data, v.shape[0], w.shape[0])
    return v, w


def check_data(data, m, n):
    """Validate a data distribution for problem sizes ``m`` and ``n``.

    New distributions add their branch here; everything that validates a
    problem goes through this function.
    """
    if isinstance(data, Gaussian):
        sigma = jnp.asarray(data.sigma) if not isinstance(data.sigma, jax.core.Tracer) else data.sigma
        if sigma.ndim != 0:
            raise ValueError(f"Gaussian.sigma must be a scalar; got shape {tuple(sigma.shape)}")
        cs = _concrete(sigma)
        if cs is not None and not (np.isfinite(cs) and cs > 0):
            raise ValueError(f"Gaussian.sigma must be a finite number > 0; got {cs}")
    elif isinstance(data, GaussianMixture):
        _check_mixture(data, m, n)
    elif isinstance(data, Empirical):
        Z = _check_floating("Empirical.Z", data.Z, 3)
        if Z.shape[1:] != (m, n):
            raise ValueError(f"Empirical.Z must have shape (N, m, n) = (N, {m}, {n}); got {Z.shape}")
        if Z.shape[0] < 1:
            raise ValueError("Empirical.Z must hold at least one sample")
    else:
        raise ValueError(
            "data must be stedyn.Gaussian or stedyn.Empirical or stedyn.GaussianMixture; "
            f"got {type(data).__name__}"
        )


def _check_mixture(data, m, n):
    means = _check_floating("GaussianMixture.means", data.means, 3)
    K = means.shape[0]
    if means.shape[1:] != (m, n):
        raise ValueError(
            f"GaussianMixture.means must have shape (K, m, n) = (K, {m}, {n}); got {tuple(means.shape)}"
        )
    if K < 1:
        raise ValueError("GaussianMixture.means must hold at least one component (K >= 1)")
    sigma = jnp.asarray(data.sigma) if not isinstance(data.sigma, jax.core.Tracer) else data.sigma
    if sigma.shape not in ((), (K,)):
        raise ValueError(
            f"GaussianMixture.sigma must be a scalar or have shape (K,) = ({K},); got shape {tuple(sigma.shape)}"
        )
    cs = _concrete(sigma)
    if cs is not None and not (np.all(np.isfinite(cs)) and np.all(cs > 0)):
        raise ValueError(f"GaussianMixture.sigma must be finite and > 0; got {cs}")
    if data.weights is None:
        return
    weights = _check_floating("GaussianMixture.weights", data.weights, 1)
    if weights.shape != (K,):
        raise ValueError(
            f"GaussianMixture.weights must have shape (K,) = ({K},), one per component; got {tuple(weights.shape)}"
        )
    cw = _concrete(weights)
    if cw is not None:
        if np.any(cw < 0):
            raise ValueError(f"GaussianMixture.weights must be >= 0; got {cw}")
        tol = 1e-6 if cw.dtype.itemsize <= 4 else 1e-9
        if abs(float(np.sum(cw, dtype=np.float64)) - 1.0) > tol:
            raise ValueError(
                f"GaussianMixture.weights must sum to 1 (within {tol:g}); they sum to {float(np.sum(cw)):.10g}"
            )


def check_r(r, ste):
    """Validate the clip value for an STE that uses it."""
    rr = jnp.asarray(r) if not isinstance(r, jax.core.Tracer) else r
    if rr.ndim != 0:
        raise ValueError(f"r must be a scalar; got shape {tuple(rr.shape)}")
    if ste.uses_r:
        cr = _concrete(rr)
        if cr is not None and not (np.isfinite(cr) and cr > 0):
            raise ValueError(f"r must be a finite number > 0 for ste={ste.name!r}; got {cr}")
    return rr
