"""Public entry points: population loss, true gradient and coarse gradient.

Each acts on one configuration and dispatches on the data distribution. They
are pure and compose with ``jax.jit``, ``jax.vmap`` and ``jax.grad``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _empirical, _gaussian, _mixture
from ._model import Empirical, Gaussian, GaussianMixture, check_problem, check_r
from ._ste import resolve_ste


# The cores are jitted so eager calls cost one dispatch instead of hundreds of
# op-by-op launches; inside a user's jit they are simply inlined. Validation
# runs before, on concrete values where it can.
_gauss_loss = jax.jit(_gaussian.loss)
_gauss_true = jax.jit(_gaussian.true_grad)
_gauss_coarse = jax.jit(_gaussian.coarse_grad, static_argnums=(4,))
_emp_loss = jax.jit(_empirical.loss)
_emp_true = jax.jit(_empirical.true_grad)
_emp_coarse = jax.jit(_empirical.coarse_grad, static_argnums=(4,))
_mix_loss = jax.jit(_mixture.loss)
_mix_true = jax.jit(_mixture.true_grad)
_mix_coarse = jax.jit(_mixture.coarse_grad, static_argnums=(4,))


def _sigma(data, v):
    return jnp.asarray(data.sigma, dtype=jnp.result_type(v, data.sigma))


# Unvalidated, traceable dispatch on the data distribution. The dynamics and the
# sweeps call these inside their own jit/vmap/scan after validating once; a new
# distribution plugs in here and everything above it follows.
def loss_core(v, w, teacher, data):
    if isinstance(data, Gaussian):
        return _gaussian.loss(v, w, teacher, _sigma(data, v))
    if isinstance(data, GaussianMixture):
        return _mixture.loss(v, w, teacher, data)
    if isinstance(data, Empirical):
        return _empirical.loss(v, w, teacher, data.Z)
    raise TypeError(f"unsupported data distribution {type(data).__name__}")


def true_grad_core(v, w, teacher, data):
    if isinstance(data, Gaussian):
        return _gaussian.true_grad(v, w, teacher, _sigma(data, v))
    if isinstance(data, GaussianMixture):
        return _mixture.true_grad(v, w, teacher, data)
    if isinstance(data, Empirical):
        return _empirical.true_grad(v, w, teacher, data.Z)
    raise TypeError(f"unsupported data distribution {type(data).__name__}")


def coarse_grad_core(v, w, teacher, data, ste, r):
    """``ste`` is a resolved :class:`STE` (static); ``r`` has the dtype of ``v``."""
    if isinstance(data, Gaussian):
        return _gaussian.coarse_grad(v, w, teacher, _sigma(data, v), ste, r)
    if isinstance(data, GaussianMixture):
        return _mixture.coarse_grad(v, w, teacher, data, ste, r)
    if isinstance(data, Empirical):
        return _empirical.coarse_grad(v, w, teacher, data.Z, ste, r)
    raise TypeError(f"unsupported data distribution {type(data).__name__}")


def check_ste_for_data(ste, data):
    """Raise if ``data`` needs an exact form that ``ste`` (resolved) lacks."""
    if isinstance(data, (Gaussian, GaussianMixture)) and ste.windows is None:
        raise ValueError(
            f"ste={ste.name!r} has no windows (piecewise-constant form), so its Gaussian "
            "population gradient has no exact form; use stedyn.Empirical data or give "
            "the STE windows"
        )


def population_loss(v, w, teacher, data):
    """Population loss ``E_Z[(v^T step(Z w) - y*(Z))^2 / 2]``.

    Args:
      v: second-layer weights, shape (m,).
      w: first-layer filter, shape (n,), nonzero.
      teacher: :class:`stedyn.Teacher` with ``v*`` of shape (m,), ``w*`` (n,).
      data: :class:`stedyn.Gaussian` (exact: Yin et al. Lemma 1 for the binary
        teacher, Proper-STE eq. 20 for ReLU, quadrature-exact otherwise),
        :class:`stedyn.GaussianMixture` (exact: the rows are independent given
        the component, Proper-STE eq. 3 reduced to one-dimensional integrals,
        see :mod:`stedyn._mixture`) or :class:`stedyn.Empirical` (sample mean).

    Returns:
      Scalar of the floating dtype of the inputs.

    Raises:
      ValueError: bad shapes, names or (for concrete inputs) values.
    """
    v, w = check_problem(v, w, teacher, data)
    if isinstance(data, Gaussian):
        return _gauss_loss(v, w, teacher, _sigma(data, v))
    if isinstance(data, GaussianMixture):
        return _mix_loss(v, w, teacher, data)
    return _emp_loss(v, w, teacher, data.Z)


def population_grad(v, w, teacher, data):
    """True gradient ``(dL/dv, dL/dw)`` of the population loss.

    For :class:`stedyn.Gaussian` this is exact (Yin et al. Lemma 2, Proper-STE
    eq. 44-45, and their generalization in :mod:`stedyn._gaussian`); at angle 0
    or pi, where the binary-teacher loss has a kink, ``dL/dw`` is 0 (a
    subgradient). For :class:`stedyn.GaussianMixture` it is autodiff of the
    exact mixture loss. For :class:`stedyn.Empirical` it is the gradient of the sample
    loss, whose ``w`` part is 0 almost everywhere: the reason STEs exist.

    Returns:
      ``(dv, dw)`` of shapes (m,) and (n,).
    """
    v, w = check_problem(v, w, teacher, data)
    if isinstance(data, Gaussian):
        return _gauss_true(v, w, teacher, _sigma(data, v))
    if isinstance(data, GaussianMixture):
        return _mix_true(v, w, teacher, data)
    return _emp_true(v, w, teacher, data.Z)


def coarse_grad(v, w, teacher, data, ste="crelu", r=1.0):
    """Expected coarse gradient: the directions of Algorithm 1 (Yin et al.).

    ``E[dl/dv]`` and ``E[g_ste]`` with ``g_ste = Z^T (mu'(Z w) * v) (y - y*)``
    (Yin et al. eq. 5).

    Args:
      v, w, teacher, data: as in :func:`population_loss`.
      ste: ``"identity"``, ``"relu"``, ``"crelu"`` (clipped ReLU, clip ``r``),
        ``"clipped_identity"`` (``1{|x| < r}``) or an :class:`stedyn.STE`.
        Gaussian and mixture data need an STE with ``windows``; any STE works with
        :class:`stedyn.Empirical`.
      r: clip value, a positive scalar (used by ``crelu`` and
        ``clipped_identity``).

    Returns:
      ``(dv, dw)`` of shapes (m,) and (n,).
    """
    ste = resolve_ste(ste)
    v, w = check_problem(v, w, teacher, data)
    r = check_r(r, ste)
    r = r.astype(v.dtype)
    check_ste_for_data(ste, data)
    if isinstance(data, Gaussian):
        return _gauss_coarse(v, w, teacher, _sigma(data, v), ste, r)
    if isinstance(data, GaussianMixture):
        return _mix_coarse(v, w, teacher, data, ste, r)
    return _emp_coarse(v, w, teacher, data.Z, ste, r)
