"""Bad input: a ValueError naming the argument and the allowed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd


def f64(x):
    return jnp.asarray(x, jnp.float64)


V, W = f64([1.0, -0.5]), f64([0.3, 0.2, -1.0])
T = sd.Teacher(v=f64([0.7, 1.2]), w=f64([1.0, 0.0, 0.5]), activation="relu")
G = sd.Gaussian(1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sd.population_loss(f64([1.0, 2.0, 3.0]), W, T, G), "v and teacher.v"),
        (lambda: sd.population_loss(V, f64([1.0, 2.0]), T, G), "w and teacher.w"),
        (lambda: sd.population_loss(V[None], W, T, G), "v must have 1 dimension"),
        (lambda: sd.population_loss(V, jnp.zeros(3, jnp.float64), T, G), "w must be a nonzero"),
        (lambda: sd.population_loss(V, W, sd.Teacher(T.v, jnp.zeros(3, jnp.float64)), G), "teacher.w must be a nonzero"),
        (lambda: sd.population_loss(V, W, T, sd.Gaussian(0.0)), "sigma must be a finite number > 0"),
        (lambda: sd.population_loss(V, W, T, sd.Gaussian(-1.0)), "sigma must be a finite number > 0"),
        (lambda: sd.population_loss(V, W, T, sd.Gaussian(f64([1.0, 2.0]))), "sigma must be a scalar"),
        (lambda: sd.coarse_grad(V, W, T, G, ste="crelu", r=0.0), "r must be a finite number > 0"),
        (lambda: sd.coarse_grad(V, W, T, G, ste="crelu", r=-2.0), "r must be a finite number > 0"),
        (lambda: sd.coarse_grad(V, W, T, G, ste="nope"), r"ste must be one of \['clipped_identity', 'crelu', 'identity', 'relu'\]"),
        (lambda: sd.Teacher(T.v, T.w, activation="softplus"), r"activation must be one of \['binary', 'linear', 'relu', 'sin', 'tanh'\]"),
        (lambda: sd.population_loss(f64([np.nan, 1.0]), W, T, G), "v contains NaN"),
        (lambda: sd.population_loss(V, f64([0.1, np.inf, 0.0]), T, G), "w contains NaN or inf"),
        (lambda: sd.population_loss(V, W, sd.Teacher(f64([np.nan, 1.0]), T.w), G), "teacher.v contains NaN"),
        (lambda: sd.population_loss(V, W, T, sd.Gaussian(float("nan"))), "sigma must be a finite"),
        (lambda: sd.population_loss(V, W, T, sd.Empirical(jnp.ones((5, 3, 3), jnp.float64))), r"Z must have shape \(N, m, n\)"),
        (lambda: sd.population_loss(V, W, T, "gaussian"), "data must be stedyn.Gaussian or stedyn.Empirical"),
        (lambda: sd.population_loss(V, W, (T.v, T.w), G), "teacher must be an stedyn.Teacher"),
        (lambda: sd.population_loss(jnp.array([1, 2]), W, T, G), "v must be a floating-point array"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_static_checks_raise_before_tracing():
    # Shape errors surface at trace time, inside jit too, as the same ValueError.
    with pytest.raises(ValueError, match="w and teacher.w"):
        jax.jit(lambda w: sd.population_loss(V, w, T, G))(f64([1.0, 2.0]))


def test_r_ignored_by_scale_free_stes():
    # identity and relu STEs do not use r; any r is accepted for them.
    a = sd.coarse_grad(V, W, T, G, ste="relu", r=-1.0)
    b = sd.coarse_grad(V, W, T, G, ste="relu", r=5.0)
    np.testing.assert_array_equal(a[1], b[1])
