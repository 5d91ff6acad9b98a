"""Weight quantization (BCGD Sec. 3.1) and quantized-filter training (eq. 10).

References: brute force over every element of Q on small n (exact
projections, best direction), an independent NumPy transcription of the
paper's one-iteration Lloyd rule, and a plain Python loop over the public
closed forms for the dynamics.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd


def _brute(w, levels):
    """argmin over q in levels^n, delta >= 0 of |delta q - w|^2: (q, delta, err)."""
    best = None
    for q in itertools.product(levels, repeat=len(w)):
        q = np.asarray(q, float)
        qq = q @ q
        if qq == 0:
            continue
        delta = max(q @ w / qq, 0.0)
        err = np.sum((delta * q - w) ** 2)
        if best is None or err < best[2] - 1e-12:
            best = (q, delta, err)
    return best


@pytest.mark.parametrize("bits,levels", [(1, (-1, 1)), (2, (-1, 0, 1))])
@pytest.mark.parametrize("seed", range(4))
def test_exact_projection_is_the_brute_force_minimizer(bits, levels, seed):
    w = np.random.default_rng(seed).normal(size=6) * np.array([3, 1, 0.2, 1, 0.05, 2])
    q_ref, d_ref, err_ref = _brute(w, levels)
    out = np.asarray(sd.quantize(jnp.asarray(w), sd.Quantizer(bits, "exact")))
    np.testing.assert_allclose(np.sum((out - w) ** 2), err_ref, rtol=1e-12)
    np.testing.assert_allclose(out, d_ref * q_ref, rtol=1e-12, atol=1e-15)


def _lloyd_numpy(w, b):
    # BCGD Sec. 3.1, one Lloyd iteration: delta_0 = 2 |w|_inf / (2^b - 1),
    # q = nearest level of w / delta_0 in {-L..L}, delta = q.w / |q|^2.
    L = 2 ** (b - 1) - 1
    d0 = 2 * np.max(np.abs(w)) / (2**b - 1)
    q = np.clip(np.round(w / d0), -L, L)
    return (q @ w) / (q @ q) * q, q


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_lloyd_matches_the_paper_rule(bits):
    w = np.random.default_rng(bits).normal(size=40)
    ref, q = _lloyd_numpy(w, bits)
    out = sd.quantize(jnp.asarray(w), sd.Quantizer(bits, "lloyd"))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-13)
    L = 2 ** (bits - 1) - 1
    assert set(np.unique(q)) <= set(range(-L, L + 1)) and len(np.unique(q)) > 2
    # The centroid step never increases the error of the assignment step.
    d0 = 2 * np.max(np.abs(w)) / (2**bits - 1)
    assert np.sum((np.asarray(out) - w) ** 2) <= np.sum((d0 * q - w) ** 2) + 1e-12


def test_one_bit_is_scaled_sign_and_ties_are_kept_exactly():
    w = jnp.asarray([0.5, -2.0, 0.0, 1.5])
    np.testing.assert_allclose(np.asarray(sd.quantize(w, 1)), [1.0, -1.0, 1.0, 1.0])
    # All |w| equal: the exact ternary keeps every entry (S_k^2 / k = k c^2).
    u = jnp.asarray([1.0, -1.0, 1.0, -1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(sd.quantize(u, 2)), np.asarray(u))
    np.testing.assert_array_equal(np.asarray(sd.quantize(jnp.zeros(3), 2)), np.zeros(3))


@pytest.mark.parametrize("bits,levels", [(1, (-1, 1)), (2, (-1, 0, 1))])
def test_best_quantized_direction_is_the_brute_force_best(bits, levels):
    ws = np.random.default_rng(7).normal(size=7)
    best = max(
        (np.asarray(q, float) for q in itertools.product(levels, repeat=7) if any(q)),
        key=lambda q: q @ ws / np.linalg.norm(q),
    )
    q, ang = sd.best_quantized(jnp.asarray(ws), bits)
    np.testing.assert_allclose(np.asarray(q), best)
    np.testing.assert_allclose(float(ang), math.acos(best @ ws / np.linalg.norm(best) / np.linalg.norm(ws)), rtol=1e-12)


def test_quantize_is_jittable_vmappable_and_keeps_float32():
    w = jax.random.normal(jax.random.key(0), (5, 9), jnp.float32)
    for qz in (sd.Quantizer(1), sd.Quantizer(2), sd.Quantizer(3)):
        plain = np.stack([np.asarray(sd.quantize(x, qz)) for x in w])
        batched = jax.jit(jax.vmap(lambda x: sd.quantize(x, qz)))(w)
        assert batched.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(batched), plain, rtol=1e-6)
    q, ang = sd.best_quantized(w[0], 2)
    assert q.dtype == jnp.float32 and ang.dtype == jnp.float32


def test_quantizer_errors_name_the_argument():
    with pytest.raises(ValueError, match="bits"):
        sd.Quantizer(0)
    with pytest.raises(ValueError, match="method"):
        sd.Quantizer(2, "kmeans")
    with pytest.raises(ValueError, match="exact"):
        sd.Quantizer(3, "exact")
    with pytest.raises(ValueError, match="quantizer"):
        sd.quantize(jnp.ones(3), "two")
    with pytest.raises(ValueError, match="bits 1 and 2"):
        sd.best_quantized(jnp.ones(3), 3)


# ---------------------------------------------------------------------------
# Dynamics


def _problem(seed, act="binary", m=6, n=7):
    rng = np.random.default_rng(seed)
    vs, ws, v0, w0 = rng.normal(size=m), rng.normal(size=n), rng.normal(size=m), rng.normal(size=n)
    return jnp.asarray(v0), jnp.asarray(w0), sd.Teacher(jnp.asarray(vs), jnp.asarray(ws), act)


def _loop(v, wf, teacher, data, *, rule, ste, lr, rho, qz, steps):
    """BCGD eq. 10 (BinaryConnect at rho = 0) over the public closed forms."""
    moves = []
    for _ in range(steps):
        w = sd.quantize(wf, qz)
        if rule == "true":
            gv, gw = sd.population_grad(v, w, teacher, data)
        else:
            gv, gw = sd.coarse_grad(v, w, teacher, data, ste=ste)
        v1 = v - lr * gv
        wf = (1 - rho) * wf + rho * w - lr * gw
        moves.append(float(jnp.sum((v1 - v) ** 2) + jnp.sum((sd.quantize(wf, qz) - w) ** 2)))
        v = v1
    return v, wf, moves


@pytest.mark.parametrize("rule,ste,act,bits,rho", [
    ("coarse", "relu", "binary", 1, 0.0),
    ("coarse", "crelu", "relu", 2, 0.1),
    ("true", "crelu", "binary", 3, 0.05),
])
def test_quantized_run_matches_a_plain_loop(rule, ste, act, bits, rho):
    v0, w0, teacher = _problem(1, act)
    data, steps = sd.Gaussian(1.0), 40
    res = sd.run(v0, w0, teacher, data, rule=rule, ste=ste, lr=0.05, steps=steps, record_every=1,
                 quantizer=bits, rho=rho)
    v, wf, moves = _loop(v0, w0, teacher, data, rule=rule, ste=ste, lr=0.05, rho=rho, qz=bits, steps=steps)
    np.testing.assert_allclose(np.asarray(res.v), np.asarray(v), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(res.w_float), np.asarray(wf), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(res.w), np.asarray(sd.quantize(wf, bits)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.trajectory["move_sq"][1:]), moves, rtol=1e-10, atol=1e-14)
    loss = [float(sd.population_loss(v, sd.quantize(wf, bits), teacher, data))]
    np.testing.assert_allclose(float(res.final["loss"]), loss[0], rtol=1e-12)


def test_batched_quantized_runs_equal_single_runs():
    v0, w0, teacher = _problem(2)
    rho = jnp.asarray([0.0, 0.02, 0.2])
    W0 = jnp.stack([w0, -w0, 2 * w0])
    res = sd.run(v0, W0, teacher, sd.Gaussian(1.0), ste="relu", lr=0.05, steps=30, quantizer=1, rho=rho)
    for i in range(3):
        one = sd.run(v0, W0[i], teacher, sd.Gaussian(1.0), ste="relu", lr=0.05, steps=30, quantizer=1, rho=rho[i])
        np.testing.assert_allclose(np.asarray(res.w_float[i]), np.asarray(one.w_float), rtol=1e-13)
        assert res.outcome[i] == one.outcome


def test_float32_quantized_run_keeps_dtype():
    v0, w0, teacher = _problem(3)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    res = sd.run(f32(v0), f32(w0), sd.Teacher(f32(teacher.v), f32(teacher.w), "binary"), sd.Gaussian(1.0),
                 ste="relu", lr=0.05, steps=50, quantizer=2, rho=0.05)
    assert res.w.dtype == jnp.float32 and res.w_float.dtype == jnp.float32
    assert res.trajectory["move_sq"].dtype == jnp.float32
    ref = sd.run(v0, w0, teacher, sd.Gaussian(1.0), ste="relu", lr=0.05, steps=50, quantizer=2, rho=0.05)
    np.testing.assert_allclose(np.asarray(res.w_float), np.asarray(ref.w_float), rtol=1e-4, atol=1e-5)


def test_outcomes_of_quantized_runs():
    # A teacher whose filter is itself a sign vector, started next to it
    # with the optimal v: the blended coarse iteration stays at the best
    # quantized direction (angle 0) and settles.
    n = 7
    ws = jnp.asarray(np.sign(np.random.default_rng(4).normal(size=n)))
    teacher = sd.Teacher(jnp.asarray(np.random.default_rng(5).normal(size=6)), ws, "binary")
    v0, _ = sd.global_min(teacher, 1.0)
    res = sd.run(v0, ws + 0.1, teacher, sd.Gaussian(1.0), ste="crelu", lr=0.05, steps=2000, quantizer=1, rho=0.1)
    assert res.outcome == "global_min"
    assert float(res.final["angle"]) < 1e-6

    # A blended true-gradient run that settles at another direction is a
    # fixed point of eq. 10: continuing it with the plain loop keeps w.
    v0, w0, teacher = _problem(0, m=20, n=25)
    res = sd.run(v0, w0, teacher, sd.Gaussian(1.0), rule="true", lr=0.05, steps=3000, quantizer=1, rho=0.05)
    assert res.outcome == "spurious_min"
    assert float(res.final["angle"]) > float(sd.best_quantized(teacher.w, 1)[1]) + 0.1
    v, wf, _ = _loop(res.v, res.w_float, teacher, sd.Gaussian(1.0), rule="true", ste=None, lr=0.05, rho=0.05,
                     qz=1, steps=500)
    np.testing.assert_array_equal(np.sign(np.asarray(wf)), np.sign(np.asarray(res.w)))

    # BinaryConnect with the true gradient from the same start only pauses
    # there (a float entry keeps drifting to its threshold): not settled.
    res = sd.run(v0, w0, teacher, sd.Gaussian(1.0), rule="true", lr=0.05, steps=3000, quantizer=1)
    assert res.outcome == "not_converged"


def test_quantized_run_errors():
    v0, w0, teacher = _problem(1)
    with pytest.raises(ValueError, match="rho"):
        sd.run(v0, w0, teacher, sd.Gaussian(1.0), steps=3, rho=0.1)
    with pytest.raises(ValueError, match="rho"):
        sd.run(v0, w0, teacher, sd.Gaussian(1.0), steps=3, quantizer=1, rho=1.5)
    with pytest.raises(ValueError, match="normalized"):
        sd.run(v0, w0, teacher, sd.Gaussian(1.0), steps=3, quantizer=1, rule="normalized")
    with pytest.raises(ValueError, match="quantizer"):
        sd.run(v0, w0, teacher, sd.Gaussian(1.0), steps=3, quantizer="1bit")
