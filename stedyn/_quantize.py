"""Weight quantization proj_Q (BCGD paper, Yin et al., Sec. 3.1).

A quantized filter is ``w = delta * q`` with a float scale ``delta > 0`` and
integer levels ``q`` (BCGD eq. 5, 7):

* ``bits = 1``: ``q in {-1, +1}^n``;
* ``bits = b >= 2``: ``q in {-L, ..., L}^n`` with ``L = 2^(b-1) - 1`` (the
  paper's set ``{+-k / 2^(b-1)}`` times ``2^(b-1)``, which ``delta``
  absorbs); ``bits = 2`` is ternary, ``q in {-1, 0, 1}^n``.

``proj_Q(w_f) = argmin_{w in Q} |w - w_f|^2`` (eq. 6) is computed

* exactly for 1 bit: ``q = sign(w_f)``, ``delta = |w_f|_1 / n``;
* exactly for 2 bits (ternary): for ``k`` nonzero levels the best choice is
  the ``k`` largest ``|w_f|`` with their signs and ``delta`` their mean, which
  leaves the error ``|w_f|^2 - S_k^2 / k`` (``S_k`` the sum of the ``k``
  largest ``|w_f|``), so ``k`` maximizes ``S_k^2 / k``; an ``O(n log n)``
  sort;
* by one Lloyd iteration for any ``bits`` (``method="lloyd"``, the paper's
  practical rule): the spacing ``delta_0 = 2 |w_f|_inf / (2^b - 1)`` puts the
  midpoint between the top level and the next at ``|w_f|_inf``; the
  assignment step rounds ``w_f / delta_0`` to the nearest level, the centroid
  step sets ``delta = q^T w_f / |q|^2``.

The projection is piecewise constant in ``w_f`` (its derivative is zero
almost everywhere); training therefore keeps a float copy ``w_f`` and steps
it with the (coarse) gradient at ``proj_Q(w_f)``: BinaryConnect, or the
blended update of eq. 10 (see :func:`stedyn.run`, rules ``"binaryconnect"``
and ``"blended"``).

With the binary step activation the student ``v^T sigma(Z w)`` sees only the
direction of ``w``, so the best quantized filter is the element of ``Q``
closest in angle to ``w*`` (:func:`best_quantized`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from . import _numerics as nm

METHODS = ("auto", "exact", "lloyd")


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """The weight quantizer proj_Q of BCGD Sec. 3.1 (a static, hashable spec).

    Attributes:
      bits: bit width ``b >= 1``; levels ``{-1, +1}`` for 1 bit, else
        ``{-L, ..., L}`` with ``L = 2^(b-1) - 1`` (2 bits: ternary).
      method: ``"exact"`` (eq. 6 solved exactly; 1 and 2 bits only),
        ``"lloyd"`` (one Lloyd iteration from ``delta_0 = 2 |w|_inf /
        (2^b - 1)``, the paper's rule for any ``b``) or ``"auto"`` (exact where
        available, else Lloyd).

    Calling it projects: ``Quantizer(2)(w)`` is ``proj_Q(w)``, shape (n,).
    """

    bits: int = 1
    method: str = "auto"

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise ValueError(f"Quantizer.bits must be an int in [1, 16]; got {self.bits!r}")
        if self.method not in METHODS:
            raise ValueError(f"Quantizer.method must be one of {METHODS}; got {self.method!r}")
        if self.method == "exact" and self.bits > 2:
            raise ValueError(
                f"Quantizer.method='exact' is available for bits 1 and 2 only (eq. 7 is intractable "
                f"beyond, BCGD Sec. 3.1); got bits={self.bits}; use method='lloyd' or 'auto'"
            )

    @property
    def levels(self):
        """Largest level ``L`` (1 for 1 bit)."""
        return 1 if self.bits == 1 else 2 ** (self.bits - 1) - 1

    @property
    def resolved_method(self):
        """``"exact"`` or ``"lloyd"``."""
        if self.method == "auto":
            return "exact" if self.bits <= 2 else "lloyd"
        return self.method

    def levels_and_scale(self, w):
        """``(q, delta)`` with ``proj_Q(w) = delta * q``; ``q`` as floats of w's dtype."""
        return quantize_levels(w, self)

    def __call__(self, w):
        q, delta = quantize_levels(w, self)
        return delta * q


def resolve_quantizer(quantizer):
    """A :class:`Quantizer` from one, or from a bit width (int)."""
    if isinstance(quantizer, Quantizer):
        return quantizer
    if isinstance(quantizer, int) and not isinstance(quantizer, bool):
        return Quantizer(quantizer)
    raise ValueError(f"quantizer must be an stedyn.Quantizer or a bit width (int >= 1); got {quantizer!r}")


def _sign(w):
    # sign(0) = +1: a 1-bit level is never 0.
    return jnp.where(w < 0, -jnp.ones_like(w), jnp.ones_like(w))


def _ternary_mask(a):
    """Mask of the ``k`` largest entries of ``a >= 0``, ``k = argmax S_k^2 / k``.

    Ranks (not a threshold) pick exactly ``k`` entries even when values tie.
    """
    n = a.shape[-1]
    order = jnp.argsort(-a)
    s = jnp.cumsum(a[order])
    k = jnp.arange(1, n + 1, dtype=a.dtype)
    # First maximizer: among ties the smallest k (fewer nonzero levels).
    kbest = jnp.argmax(s * s / k).astype(jnp.int32)
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return rank <= kbest


def quantize_levels(w, quantizer):
    """``(q, delta)`` of ``proj_Q(w)`` (BCGD eq. 6-7, Sec. 3.1).

    Args:
      w: float filter, shape (n,).
      quantizer: :class:`Quantizer` or a bit width.

    Returns:
      ``q`` (n,) integer levels stored in ``w``'s dtype, and the scale
      ``delta`` (scalar, >= 0; 0 only for ``w = 0``).
    """
    qz = resolve_quantizer(quantizer)
    w = jnp.asarray(w)
    a = jnp.abs(w)
    if qz.bits == 1:
        q = _sign(w)
    elif qz.resolved_method == "exact":
        q = jnp.where(_ternary_mask(a), _sign(w), jnp.zeros_like(w))
    else:
        L = qz.levels
        top = jnp.max(a)
        d0 = 2.0 * top / (2.0**qz.bits - 1.0)
        safe_d0 = jnp.where(d0 > 0, d0, jnp.ones_like(d0))
        q = jnp.clip(jnp.round(w / safe_d0), -L, L)
    qq = jnp.sum(q * q)
    # Centroid step delta = q^T w / |q|^2 (for 1 bit: |w|_1 / n; for the exact
    # ternary: the mean of the kept |w|). q = 0 only when w = 0.
    delta = jnp.where(qq > 0, jnp.dot(q, w) / jnp.where(qq > 0, qq, jnp.ones_like(qq)), jnp.zeros_like(qq))
    return q, delta


def quantize(w, quantizer=1):
    """``proj_Q(w)`` (BCGD eq. 6): the quantized filter ``delta * q``, shape of ``w``.

    Args:
      w: float filter, shape (n,) (vmap for batches).
      quantizer: :class:`Quantizer` or a bit width (default 1 bit).
    """
    return resolve_quantizer(quantizer)(w)


def best_quantized(w_star, quantizer=1):
    """The quantized direction closest in angle to ``w*``, and that angle.

    With the binary step student the population loss depends on ``w`` only
    through its direction, so this is the best element of ``Q`` for every
    teacher. Exact for 1 bit (``sign(w*)``: ``q^T w*`` is maximal at fixed
    ``|q| = sqrt(n)``) and 2 bits (the maximal ``q^T w* / |q|`` over
    ``q in {-1, 0, 1}^n`` takes the ``k`` largest ``|w*_i|`` with their
    signs, ``k`` maximizing ``S_k / sqrt(k)`` -- the same ``k`` as the exact
    ternary projection of ``w*``). For more bits the problem is a hard
    integer program and no exact method is offered.

    Args:
      w_star: teacher filter, shape (n,), nonzero.
      quantizer: :class:`Quantizer` or a bit width, 1 or 2.

    Returns:
      ``(q, angle)``: levels (n,) in ``w_star``'s dtype and the angle in
      ``[0, pi]`` between ``q`` and ``w*``.
    """
    qz = resolve_quantizer(quantizer)
    if qz.bits > 2:
        raise ValueError(f"best_quantized is exact for quantizer bits 1 and 2 only; got bits={qz.bits}")
    q, _ = quantize_levels(w_star, Quantizer(qz.bits, "exact"))
    return q, nm.angle_cos_sin(q, w_star)[0]

