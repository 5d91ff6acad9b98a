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


def sample_mixture(mixture, num_samples, *, key, dtype=None):
    """Draw ``num_samples`` inputs ``Z`` from a :class:`stedyn.GaussianMixture`.

    The Monte-Carlo path of the Proper-STE paper's Sec. 4 (10,000 samples):
    pass the result as ``stedyn.Empirical(Z)``. Components are drawn with
    probabilities ``weights``, then ``Z = means[k] + sigma_k * eps`` with
    ``eps`` standard normal.

    Args:
      mixture: the :class:`stedyn.GaussianMixture`.
      num_samples: number of samples ``N`` (static).
      key: a JAX PRNG key (``jax.random.key(seed)``), keyword-only; the draw
        is a pure function of it.
      dtype: floating dtype of ``Z``; default the dtype of ``mixture.means``.

    Returns:
      ``Z`` of shape ``(N, m, n)``.
    """
    means = jnp.asarray(mixture.means)
    if dtype is None:
        dtype = means.dtype if jnp.issubdtype(means.dtype, jnp.floating) else jnp.result_type(float)
    means = means.astype(dtype)
    K = means.shape[0]
    sigma = jnp.broadcast_to(jnp.asarray(mixture.sigma).astype(dtype), (K,))
    k_comp, k_noise = jax.random.split(key)
    if mixture.weights is None:
        comp = jax.random.randint(k_comp, (num_samples,), 0, K)
    else:
        logits = jnp.log(jnp.asarray(mixture.weights).astype(dtype))
        comp = jax.random.categorical(k_comp, logits, shape=(num_samples,))
    eps = jax.random.normal(k_noise, (num_samples,) + means.shape[1:], dtype)
    return means[comp] + sigma[comp][:, None, None] * eps
