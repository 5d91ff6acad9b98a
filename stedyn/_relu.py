"""Gaussian moments of ReLU units: the closed forms behind the ReLU models.

Everything here is for ``x ~ N(0, I_d)``; input std ``sigma`` multiplies
every second moment by ``sigma^2`` (the models do that). With ``theta`` the
angle between ``u`` and ``v``:

* :func:`relu_kernel` ``E[relu(u.x) relu(v.x)] = |u||v| (sin theta + (pi - theta) cos theta) / (2 pi)``
  (Lee, Sim, Ye, Lemma 2.1, last line; the arc-cosine kernel of order 1).
* :func:`relu_gated_moment` ``E[1{e.x > 0} 1{w.x > 0} x x^T] w = ((pi - theta) w + |w| sin theta e^) / (2 pi)``
  (Tian, Theorem 1 with N = 1). It is also the gradient of
  :func:`relu_kernel` in its first argument, ``E[1{u.x > 0} x relu(v.x)]``,
  which is how the ReLU models use it.
* :func:`truncated_covariance` ``E[1{u.x > 0} 1{v.x > 0} x x^T]`` (Lee, Sim,
  Ye, Lemma 2.1), in the eigenvector form of its proof,
  ``(pi - theta)/(2 pi) I + sin theta/(2 pi) (r r^T - s s^T)`` with
  ``r = unit(u^ + v^)``, ``s = unit(u^ - v^)``. The lemma's printed form
  divides by ``sin theta``, which is 0/0 at theta = 0 and pi; this one has no
  division and gives ``I/2`` at theta = 0 (the lemma's first identity) and 0
  at theta = pi.

Tian's text states Theorem 1 for ``F(e, w) = X^T D(e) D(w) X w`` summed over
N samples; per sample it is :func:`relu_gated_moment`. (The supplement's
eq. 48 then gives the one-unit population gradient
``(w - w*)/2 + (theta w* - |w*| sin theta w^)/(2 pi)``, which is
``w/2 - relu_gated_moment(w, w*)``.)

Angles come from Kahan's ``2 atan2(|u^ - v^|, |u^ + v^|)`` of unit vectors
built with :func:`stedyn._numerics.safe_normalize`, so every function is
finite (value and gradient) at theta = 0 and pi; a zero argument gives the
limit value 0 for the moments (its direction is then irrelevant).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from . import _numerics as nm

INV_2PI = 1.0 / (2.0 * math.pi)


def _geometry(u, v):
    """``(theta, cos, sin, u^, v^, |u|, |v|)``; unit vectors are 0 for a zero input."""
    uh = nm.safe_normalize(u)
    vh = nm.safe_normalize(v)
    a = nm.safe_norm(uh - vh)
    b = nm.safe_norm(uh + vh)
    theta = 2.0 * jnp.arctan2(a, b)
    return theta, jnp.cos(theta), jnp.sin(theta), uh, vh, nm.safe_norm(u), nm.safe_norm(v)


def relu_angle(u, v):
    """Angle between ``u`` and ``v`` in ``[0, pi]`` (Kahan's atan2 of norms).

    Args:
      u, v: arrays of shape (..., d); a zero vector gives pi/2.

    Returns:
      array of shape (...).
    """
    return _geometry(u, v)[0]


def relu_kernel(u, v):
    """``E[relu(u.x) relu(v.x)]`` for ``x ~ N(0, I)`` (Lee-Sim-Ye Lemma 2.1).

    ``|u||v| (sin theta + (pi - theta) cos theta) / (2 pi)``; ``|u|^2 / 2`` for
    ``u = v`` and 0 for ``theta = pi`` or a zero argument. Computed as
    ``u.v / 2 + |u||v| (sin theta - theta cos theta) / (2 pi)``, whose
    angle-dependent part is ``O(theta^3)``, so its Hessian is right also at
    ``theta = 0`` (two coinciding units).

    Args:
      u, v: arrays of shape (..., d) (broadcast against each other).

    Returns:
      array of shape (...), the dtype of the inputs.
    """
    theta, c, s, _, _, nu, nv = _geometry(u, v)
    # u.v/2 + |u||v| (sin - theta cos)/(2 pi): the same value, but the part
    # that depends on the angle is O(theta^3), so autodiff of any order is
    # right at theta = 0, where theta itself (a norm of u^ - v^) has no
    # derivative. In the textbook form the -theta^2/4 curvature of cos(theta)
    # is lost there and the Hessian of a loss with coinciding units is wrong.
    return 0.5 * jnp.sum(u * v, axis=-1) + nu * nv * (s - theta * c) * INV_2PI


def relu_gated_moment(e, w):
    """Tian's Theorem 1 per sample: ``E[1{e.x > 0} 1{w.x > 0} x x^T] w``.

    ``((pi - theta) w + |w| sin(theta) e^) / (2 pi)`` with ``theta`` the angle
    between ``e`` and ``w`` (Tian's ``e`` is a unit vector; only its direction
    matters here). Equal to ``E[1{e.x > 0} x relu(w.x)]``, the gradient of
    :func:`relu_kernel` in its first argument: ``w/2`` at ``theta = 0``, 0 at
    ``theta = pi``.

    Args:
      e: array (..., d), nonzero (its direction gates the samples).
      w: array (..., d).

    Returns:
      array (..., d).
    """
    theta, _, s, eh, _, _, nw = _geometry(e, w)
    # w/2 + (|w| sin(theta) e^ - theta w)/(2 pi): the angle-dependent part is
    # O(theta^2) near theta = 0, so derivatives (the loss Hessian) are right
    # there too, where theta itself has none.
    return 0.5 * w + ((nw * s)[..., None] * eh - theta[..., None] * w) * INV_2PI


def truncated_covariance(u, v):
    """Lee-Sim-Ye Lemma 2.1: ``E[1{u.x > 0} 1{v.x > 0} x x^T]``, shape (d, d).

    ``(pi - theta)/(2 pi) I + sin(theta)/(2 pi) (r r^T - s s^T)`` with
    ``r = unit(u^ + v^)`` and ``s = unit(u^ - v^)`` (the eigenvectors in the
    lemma's proof): equal to the lemma's ``1/(2 pi sin theta)`` form for
    ``0 < theta < pi`` and to its limits ``I/2`` (theta = 0, the lemma's first
    identity) and ``0`` (theta = pi).

    Args:
      u, v: nonzero arrays of shape (d,).

    Returns:
      array of shape (d, d).
    """
    theta, _, s, uh, vh, _, _ = _geometry(u, v)
    r = nm.safe_normalize(uh + vh)
    q = nm.safe_normalize(uh - vh)
    d = u.shape[-1]
    eye = jnp.eye(d, dtype=jnp.result_type(u, v))
    return ((math.pi - theta) * eye + s * (jnp.outer(r, r) - jnp.outer(q, q))) * INV_2PI
