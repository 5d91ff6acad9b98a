"""Straight-through estimators: proxy derivatives mu' for the binary step.

An :class:`STE` has a ``derivative(x, r)`` (used by the Monte-Carlo path, in the
custom VJP of the step) and, optionally, ``windows(r)``: the same derivative
written as a weighted sum of interval indicators, ``mu'(x) = sum_k c_k 1{lo_k <
x < hi_k}``. Every piecewise-constant proxy has that form, and for it the
Gaussian population coarse gradient is exact (see :mod:`stedyn._gaussian`).
A proxy without windows (sigmoid'-style, say) still works with
:class:`stedyn.Empirical` data.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class STE:
    """A straight-through estimator.

    Attributes:
      name: identifier used in messages.
      derivative: ``(x, r) -> mu'(x)``, elementwise and JAX-traceable.
      windows: ``r -> ((lo, hi, weight), ...)`` in pre-activation units, with
        ``None`` for an infinite end; ``None`` if the proxy is not piecewise
        constant (then only Monte-Carlo data is supported).
      uses_r: whether the proxy depends on the clip value ``r`` (then ``r`` must
        be positive).

    Example, the clipped identity ``1{|x| <= r}`` of QAT libraries::

        ste = sd.STE("clipped_identity",
                     derivative=lambda x, r: (jnp.abs(x) <= r).astype(x.dtype),
                     windows=lambda r: ((-r, r, 1.0),), uses_r=True)
    """

    name: str
    derivative: Callable
    windows: Optional[Callable] = None
    uses_r: bool = False

    def __repr__(self):
        return f"STE({self.name!r})"


def _indicator(cond, x):
    return cond.astype(jnp.result_type(x))


BUILTIN_STES = {
    # Yin et al. Lemma 7 / Proper-STE eq. 25: mu(x) = x.
    "identity": STE("identity", lambda x, r: jnp.ones_like(x), lambda r: ((None, None, 1.0),)),
    # Yin et al. Lemma 4 / Proper-STE eq. 26: mu(x) = max(x, 0).
    "relu": STE("relu", lambda x, r: _indicator(x > 0, x), lambda r: ((0.0, None, 1.0),)),
    # Proper-STE eq. 27: mu(x) = min(max(x, 0), r).
    "crelu": STE(
        "crelu",
        lambda x, r: _indicator((x > 0) & (x < r), x),
        lambda r: ((0.0, r, 1.0),),
        uses_r=True,
    ),
    # Clipped identity of QAT libraries: mu'(x) = 1{|x| < r}.
    "clipped_identity": STE(
        "clipped_identity",
        lambda x, r: _indicator(jnp.abs(x) < r, x),
        lambda r: ((-r, r, 1.0),),
        uses_r=True,
    ),
}


def resolve_ste(ste) -> STE:
    """Map a name or :class:`STE` to an :class:`STE`, or raise ``ValueError``."""
    if isinstance(ste, STE):
        return ste
    if isinstance(ste, str) and ste in BUILTIN_STES:
        return BUILTIN_STES[ste]
    raise ValueError(f"ste must be one of {sorted(BUILTIN_STES)} or an stedyn.STE instance; got {ste!r}")


def step_with_ste(x, r, ste: STE):
    """Binary step ``1{x > 0}`` whose backward pass uses ``ste.derivative``.

    This is Yin et al. eq. 5: the forward pass is the quantized activation, the
    backward pass replaces its a.e.-zero derivative by the proxy ``mu'``.

    Args:
      x: pre-activations, any shape.
      r: clip value (scalar), passed to the proxy; receives no gradient.
      ste: the estimator.
    """
    return _step_ste(ste.derivative, x, r)


def _make_step(derivative):
    @jax.custom_vjp
    def step(x, r):
        return (x > 0).astype(jnp.result_type(x))

    def fwd(x, r):
        return step(x, r), (x, r)

    def bwd(res, g):
        x, r = res
        return g * derivative(x, r), jnp.zeros_like(r)

    step.defvjp(fwd, bwd)
    return step


_STEP_CACHE: dict = {}


def _step_ste(derivative, x, r):
    # One custom_vjp function per proxy, cached so repeated calls reuse traces.
    fn = _STEP_CACHE.get(derivative)
    if fn is None:
        fn = _STEP_CACHE[derivative] = _make_step(derivative)
    return fn(x, r)
