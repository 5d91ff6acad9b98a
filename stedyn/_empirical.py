"""Sample-average (Monte-Carlo) population quantities on a finite sample ``Z``.

The per-sample loss is ``(v^T step(Z w) - v*^T f(Z w*))^2 / 2``. Its gradient
w.r.t. ``w`` is taken by autodiff through a step whose VJP is the STE's proxy
derivative (Yin et al. eq. 5), so any proxy works, windowed or not. This is
both a user feature (any data) and the independent reference for the exact
Gaussian formulas in the tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._activations import ACTIVATIONS
from ._ste import STE, step_with_ste

_true_step = ACTIVATIONS["binary"]


def per_sample_loss(v, w, teacher, Z, step):
    """Loss of each sample, shape (N,), with ``step`` as the student activation."""
    y = step(Z @ w) @ v
    y_star = teacher.act(Z @ teacher.w) @ teacher.v
    return 0.5 * (y - y_star) ** 2


def loss(v, w, teacher, Z):
    return jnp.mean(per_sample_loss(v, w, teacher, Z, _true_step))


def true_grad(v, w, teacher, Z):
    """Exact gradient of the sample loss: the w part is 0 almost everywhere."""
    return jax.grad(loss, argnums=(0, 1))(v, w, teacher, Z)


def coarse_grad(v, w, teacher, Z, ste: STE, r):
    def sample_mean(v, w):
        step = lambda x: step_with_ste(x, r, ste)
        return jnp.mean(per_sample_loss(v, w, teacher, Z, step))

    return jax.grad(sample_mean, argnums=(0, 1))(v, w)
