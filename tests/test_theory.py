"""Closed-form landscape theory (stedyn._theory) against the exact engine.

The theory module is written from the papers (Yin et al. 2019 for the binary
teacher, the Proper-STE paper for the ReLU teacher); the engine
(``sd.population_loss / population_grad / coarse_grad``) was derived and
checked independently. Each stationary point must zero the engine's gradients,
each Hessian must match autodiff of the engine's loss, and each correlation
must match the inner product of the engine's two gradients.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import stedyn as sd
from stedyn import _theory as th

SIGMA = 0.8
V_STAR = [1.0, -0.5, 0.3, 0.8]  # (m+1)|v*|^2 = 9.9 > 2 S^2 = 5.12: saddle exists
V_NOSADDLE = [1.0, 1.0, 1.0, 0.5]  # 16.25 < 24.5: no saddle
W_STAR = [0.6, -1.1, 0.4]  # |w*| = 1.316, not 1: only its direction matters for binary
NORMS = [0.3, 1.7, 5.0]

# Jitted engine entry points: the teacher and data are pytrees, so one trace
# serves every point of a given shape (keeps the file fast).
ploss = jax.jit(sd.population_loss)
pgrad = jax.jit(sd.population_grad)
cgrad = jax.jit(sd.coarse_grad, static_argnames=("ste",))
wat = jax.jit(th.w_at_angle)


def f64(x):
    return jnp.asarray(x, jnp.float64)


def teacher(act, vs=V_STAR, ws=W_STAR):
    return sd.Teacher(v=f64(vs), w=f64(ws), activation=act)


def grad_scale(T, sigma=SIGMA):
    """Natural size of the gradients: |v*|^2 (1 + sigma |w*|)^2 (1 + sigma)."""
    vv = float(jnp.dot(T.v, T.v))
    a = sigma * float(jnp.linalg.norm(T.w))
    return vv * (1.0 + a) ** 2 * (1.0 + sigma)


def norm(x):
    return float(jnp.linalg.norm(x))


def clip_angle(x):
    return min(max(x, 0.0), math.pi)


def w_exact(T, point, rho):
    """w at the point's angle. For angle 0 / pi use +-w* itself, so that the
    engine's angle is exactly 0 / pi (w*/|w*| rounds identically): the binary
    teacher's true gradient has a kink there, and 1e-16 off it is the full
    one-sided gradient."""
    ang = float(point.angle)
    if ang == 0.0:
        return T.w
    if ang == math.pi:
        return -T.w
    return wat(T.w, point.angle, rho)


# ---------------------------------------------------------------------------
# Formulas as printed in the papers


def test_binary_points_match_yin_formulas():
    T = teacher("binary")
    vs = T.v
    m = vs.shape[0]
    A = jnp.eye(m) + jnp.ones((m, m))
    J = jnp.ones((m, m))
    S, vv = float(jnp.sum(vs)), float(vs @ vs)
    # Lemma 2 item 2 / Prop. 1.
    v0, a0 = th.global_min(T, SIGMA)
    np.testing.assert_allclose(v0, vs, rtol=0, atol=1e-15)
    assert float(a0) == 0.0
    vpi, api = th.spurious_min(T)
    np.testing.assert_allclose(vpi, jnp.linalg.solve(A, (J - jnp.eye(m)) @ vs), rtol=1e-13, atol=1e-15)
    assert float(api) == math.pi
    # Eq. 9.
    vb, ab, ex = th.saddle_point(T)
    big = (m + 1) * vv
    coef = -(S**2) / (big - S**2)
    np.testing.assert_allclose(vb, jnp.linalg.solve(A, (coef * jnp.eye(m) + J) @ vs), rtol=1e-13, atol=1e-15)
    assert abs(float(ab) - 0.5 * math.pi * big / (big - S**2)) < 1e-14
    assert bool(ex) and S**2 < (m + 1) / 2 * vv
    assert abs(float(vb @ vs)) < 1e-14
    # Eq. 8 on the whole v-stationary curve.
    for theta in [0.3, 1.2, 2.9]:
        ref = jnp.linalg.solve(A, ((1 - 2 * theta / math.pi) * jnp.eye(m) + J) @ vs)
        np.testing.assert_allclose(th.optimal_v(T, theta), ref, rtol=1e-13, atol=1e-15)


def test_relu_points_match_proper_ste_formulas():
    T = teacher("relu")
    vs = T.v
    m = vs.shape[0]
    J = jnp.ones((m, m))
    S2, vv = float(jnp.sum(vs)) ** 2, float(vs @ vs)
    k = 2 * SIGMA * float(jnp.linalg.norm(T.w)) / math.sqrt(2 * math.pi)
    v0, _ = th.global_min(T, SIGMA)
    np.testing.assert_allclose(v0, k * vs, rtol=1e-14)
    vpi, _ = th.spurious_min(T, SIGMA)
    np.testing.assert_allclose(vpi, k * (-jnp.eye(m) + 2 / (m + 1) * J) @ vs, rtol=1e-13)
    vb, phib, ex = th.saddle_point(sd.Teacher(v=vs, w=T.w, activation="relu"), sd.Gaussian(SIGMA))
    phi_ref = math.acos(S2 / (-(m + 1) * vv + S2))
    assert abs(float(phib) - phi_ref) < 1e-14 and bool(ex)
    c = math.cos(phi_ref)
    np.testing.assert_allclose(vb, k * (c * jnp.eye(m) + (1 - c) / (m + 1) * J) @ vs, rtol=1e-12, atol=1e-15)
    assert abs(float(vb @ vs)) < 1e-14


# ---------------------------------------------------------------------------
# Every stationary point zeroes the engine's gradients


@pytest.mark.parametrize("act", ["binary", "relu"])
@pytest.mark.parametrize("vs", [V_STAR, V_NOSADDLE])
def test_points_zero_true_gradient(act, vs):
    T = teacher(act, vs)
    D = sd.Gaussian(SIGMA)
    tol = 1e-10 * grad_scale(T)
    pts = th.stationary_points(T, SIGMA)
    assert [p.name for p in pts] == (["v_0", "v_bar", "v_pi"] if vs is V_STAR else ["v_0", "v_pi"])
    for p in pts:
        kink = act == "binary" and float(p.angle) in (0.0, math.pi)
        for rho in NORMS:
            w = w_exact(T, p, rho) if act == "binary" else wat(T.w, p.angle, rho)
            dv, dw = pgrad(p.v, w, T, D)
            assert norm(dv) < tol, (p.name, rho, norm(dv))
            if not kink:  # binary kinks: see test_binary_true_gradient_at_exact_kink
                assert norm(dw) < tol, (p.name, rho, norm(dw))
            assert abs(float(ploss(p.v, w, T, D) - p.loss)) < tol


def test_binary_true_gradient_at_exact_kink():
    """At angle exactly 0 or pi the binary loss has a kink; the engine returns
    the documented subgradient 0 (it once normalized rounding noise instead)."""
    T = teacher("binary")
    D = sd.Gaussian(SIGMA)
    for p in th.stationary_points(T, SIGMA):
        if float(p.angle) in (0.0, math.pi):
            _, dw = pgrad(p.v, w_exact(T, p, 1.0), T, D)
            assert norm(dw) < 1e-12, (p.name, norm(dw))


def test_binary_true_gradient_is_one_sided_off_the_kink():
    """Not a bug but a warning for dynamics: 1e-9 rad off angle 0 the binary
    teacher's true dL/dw is the full one-sided value (v.v*)/(2 pi |w|)."""
    T = teacher("binary")
    v0, _ = th.global_min(T)
    w = wat(T.w, 1e-9, 2.0)
    _, dw = pgrad(v0, w, T, sd.Gaussian(SIGMA))
    assert abs(norm(dw) - float(v0 @ T.v) / (2 * math.pi * 2.0)) < 1e-12


@pytest.mark.parametrize("act", ["binary", "relu"])
@pytest.mark.parametrize("ste", ["relu", "crelu", "identity"])
@pytest.mark.parametrize("vs", [V_STAR, V_NOSADDLE])
def test_ste_fixed_points_against_engine(act, ste, vs):
    """Yin Lemma 6 (ReLU STE, binary teacher), Lemma 7 (identity); Proper-STE
    eq. 25, 26, 28-31 (ReLU teacher); the clipped ReLU for the binary teacher
    (derived). A point is fixed iff the engine's E[dl/dv] and E[g] vanish."""
    T = teacher(act, vs)
    D = sd.Gaussian(SIGMA)
    r = 1.3
    tol = 1e-10 * grad_scale(T)
    for p in th.stationary_points(T, SIGMA, ste=ste, r=r):
        rhos = NORMS if p.w_norm is None else [float(p.w_norm)]
        for rho in rhos:
            w = wat(T.w, p.angle, rho)
            dv, dw = cgrad(p.v, w, T, D, ste=ste, r=r)
            assert norm(dv) < tol
            if p.ste_fixed:
                assert norm(dw) < tol, (p.name, rho, norm(dw))
            else:
                assert norm(dw) > 1e-3 * grad_scale(T), (p.name, rho, norm(dw))
    expected = {
        ("binary", "relu"): {"v_0", "v_bar", "v_pi"},
        ("binary", "crelu"): {"v_0", "v_bar", "v_pi"},
        ("binary", "identity"): {"v_0"},
        ("relu", "relu"): {"v_bar", "v_pi"},
        ("relu", "crelu"): {"v_0", "v_bar", "v_pi"},
        ("relu", "identity"): set(),
    }[(act, ste)]
    fixed = {p.name for p in th.stationary_points(T, SIGMA, ste=ste, r=r) if p.ste_fixed}
    assert fixed == expected & {p.name for p in th.stationary_points(T, SIGMA)}


def test_crelu_global_min_only_at_w0():
    """Proper-STE eq. 29-31: the clipped ReLU picks the scale lambda(w0) = 2."""
    T = teacher("relu")
    D = sd.Gaussian(SIGMA)
    r = 1.3
    (p0,) = [p for p in th.stationary_points(T, SIGMA, ste="crelu", r=r) if p.name == "v_0"]
    w0 = float(p0.w_norm)
    assert abs(w0 - r / (SIGMA * 1.3102684802054403)) < 1e-13
    tol = 1e-10 * grad_scale(T)
    for rho, zero in [(w0, True), (0.5 * w0, False), (2 * w0, False)]:
        _, dw = cgrad(p0.v, wat(T.w, 0.0, rho), T, D, ste="crelu", r=r)
        assert (norm(dw) < tol) == zero, (rho, norm(dw))


def test_identity_ste_special_cases():
    D = sd.Gaussian(SIGMA)
    # Yin Lemma 7: |E g_id| = sigma 2 (m-1) S^2 / (sqrt(2 pi) (m+1)^2) at the spurious min.
    T = teacher("binary")
    m, S = 4, float(jnp.sum(T.v))
    vpi, _ = th.spurious_min(T)
    _, dw = cgrad(vpi, -T.w, T, D, ste="identity")
    ref = SIGMA * 2 * (m - 1) * S**2 / (math.sqrt(2 * math.pi) * (m + 1) ** 2)
    assert abs(norm(dw) - ref) < 1e-13
    # ... which vanishes when 1^T v* = 0.
    T0 = teacher("binary", [1.0, -0.5, 0.25, -0.75])
    (ppi,) = [p for p in th.stationary_points(T0, SIGMA, ste="identity") if p.name == "v_pi"]
    assert ppi.ste_fixed and ppi.kind == "spurious_min"
    _, dw = cgrad(ppi.v, -T0.w, T0, D, ste="identity")
    assert norm(dw) < 1e-14
    # ReLU teacher with m = 1: v_pi = 0, so the identity STE vanishes there,
    # contrary to "no solution" under Proper-STE eq. 25 (a measure-zero case).
    T1 = teacher("relu", [0.7])
    (ppi,) = [p for p in th.stationary_points(T1, SIGMA, ste="identity") if p.name == "v_pi"]
    assert ppi.ste_fixed and float(jnp.abs(ppi.v).max()) < 1e-16
    _, dw = cgrad(ppi.v, wat(T1.w, ppi.angle, 1.0), T1, D, ste="identity")
    assert norm(dw) < 1e-14
    # ... and for m = 2 at v* = (1, y) with (1^T v*)^2 / |v*|^2 = q,
    # q = (1/2 - 1/pi) / (1/(m+1) - 4/(pi (m+1)^2)): there v_pi is even a
    # spurious *minimum* at which the identity STE's coarse gradient vanishes.
    m = 2
    q = (0.5 - 1 / math.pi) / (1 / (m + 1) - 4 / (math.pi * (m + 1) ** 2))
    y = (-1 + math.sqrt(1 - (1 - q) ** 2)) / (1 - q)
    T2 = teacher("relu", [1.0, y])
    (ppi,) = [p for p in th.stationary_points(T2, SIGMA, ste="identity") if p.name == "v_pi"]
    assert ppi.ste_fixed and ppi.kind == "spurious_min"
    _, dw = cgrad(ppi.v, wat(T2.w, ppi.angle, 1.0), T2, D, ste="identity")
    assert norm(dw) < 1e-14


# ---------------------------------------------------------------------------
# Losses


@pytest.mark.parametrize("act", ["binary", "relu"])
def test_stationary_loss_against_engine_and_papers(act):
    T = teacher(act)
    D = sd.Gaussian(SIGMA)
    for ang in [0.0, 0.4, 1.3, 2.2, math.pi]:
        v = th.optimal_v(T, ang, SIGMA)
        L = ploss(v, wat(T.w, ang, 1.1), T, D)
        assert abs(float(L - th.stationary_loss(T, ang, SIGMA))) < 1e-14
    vs = T.v
    m, S2, vv = 4, float(jnp.sum(vs)) ** 2, float(vs @ vs)
    L0, Lb, Lpi = (float(p.loss) for p in th.stationary_points(T, SIGMA))
    if act == "binary":
        assert abs(L0) < 1e-16
        assert abs(Lpi - S2 / (2 * (m + 1))) < 1e-15
    else:
        a2 = (SIGMA * float(jnp.linalg.norm(T.w))) ** 2
        # Eq. 47 as corrected in papers/README.md: v*^T v*, not v*^T v.
        assert abs(L0 - a2 * (math.pi - 2) / (4 * math.pi) * vv) < 1e-15
        # Eq. 48.
        assert abs(Lpi - a2 / (4 * math.pi) * ((math.pi - 2) * vv + 4 / (m + 1) * S2)) < 1e-15
        # Eq. 50.
        big = (m + 1) * vv
        assert abs(Lb - Lpi - a2 / (4 * math.pi) * (big - 2 * S2) ** 2 / ((big - S2) * (m + 1))) < 1e-15
    assert L0 < Lpi < Lb  # eq. 51


# ---------------------------------------------------------------------------
# Hessian classification (Proper-STE App. A.2; Yin Prop. 1 proof)


@jax.jit
def _hess_v_w(x, T, D):
    m = T.v.shape[0]
    return jax.hessian(lambda y: sd.population_loss(y[:m], y[m:], T, D))(x)


def _engine_hessian(T, p, rho, offset=0.0, perp=None):
    """jax.hessian of the engine's loss in (v, w) at (p.v, w at p.angle).

    With ``offset``: the mean of the Hessians at angle p.angle +- offset (the
    two sides of the (w*, perp) plane). Where the engine's angle is exactly 0
    or pi, autodiff through it (Kahan's form: |u^ - v^| has a cone at 0) loses
    the angular curvature; the loss is even in the signed angle there, so the
    mean of the two sides is the Hessian at the point up to O(offset^2)."""
    D = sd.Gaussian(SIGMA)
    if offset == 0.0:
        return _hess_v_w(jnp.concatenate([p.v, wat(T.w, p.angle, rho, perp=perp)]), T, D)
    near = abs(float(p.angle) - offset)
    hs = [
        _hess_v_w(jnp.concatenate([p.v, wat(T.w, near, rho, perp=sgn * perp)]), T, D)
        for sgn in (1.0, -1.0)
    ]
    return 0.5 * (hs[0] + hs[1])


def _v_angle_block(Hvw, T, p, rho, perp):
    """Restrict a (v, w) Hessian to (v, psi), w = rho(cos psi w*^ + sin psi e).

    Exact at a stationary point: the extra term dL/dw . d^2w/dpsi^2 = -dL/dw . w
    is 0 by scale invariance."""
    m = T.v.shape[0]
    e = wat(T.w, math.pi / 2, 1.0, perp=perp)
    wh = T.w / jnp.linalg.norm(T.w)
    psi = float(p.angle)
    dw = rho * (-math.sin(psi) * wh + math.cos(psi) * e)
    J = jnp.zeros((m + T.w.shape[0], m + 1)).at[:m, :m].set(jnp.eye(m)).at[m:, m].set(dw)
    return J.T @ Hvw @ J


@pytest.mark.parametrize("act", ["binary", "relu"])
def test_hessian_against_autodiff(act):
    """loss_hessian (Proper-STE eq. 52; Yin Prop. 1 proof) against jax.hessian
    of the engine's loss: the (v, angle) block itself, and the spectrum in
    (v, w) space: the block with the angle scaled by 1/|w|, a zero along w
    (scale invariance) and n - 2 out-of-plane eigenvalues (0 at the saddle,
    the angle curvature at 0 and pi)."""
    T = teacher(act)
    n, rho = 3, 1.7
    perp = f64([1.0, 1.0, 0.5])
    for p in th.stationary_points(T, SIGMA):
        interior = 0.0 < float(p.angle) < math.pi
        if act == "binary" and not interior:
            continue  # kink: covered by the perturbation test in test_classification
        Hvw = _engine_hessian(T, p, rho, 0.0 if interior else 1e-6, perp)
        H = th.loss_hessian(T, p.v, p.angle, SIGMA)
        np.testing.assert_allclose(_v_angle_block(Hvw, T, p, rho, perp), H, rtol=0, atol=1e-10)
        Hs = np.array(H)
        Hs[-1, :] /= rho
        Hs[:, -1] /= rho
        out = float(Hs[-1, -1]) if not interior else 0.0
        ref = np.sort(np.concatenate([np.linalg.eigvalsh(Hs), [0.0], [out] * (n - 2)]))
        np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(np.asarray(Hvw))), ref, rtol=0, atol=1e-9)


def test_engine_autodiff_curvature_at_angle_zero_is_lost():
    """Documents the limitation the offset above works around: with w* on an
    axis the engine's angle at w = w* is exactly 0, and jax.hessian of the
    engine's loss misses the angular curvature (0.35 here)."""
    T = teacher("relu", ws=[1.0, 0.0, 0.0])
    p = th.stationary_points(T, SIGMA)[0]
    perp = f64([0.0, 1.0, 0.0])
    H = th.loss_hessian(T, p.v, 0.0, SIGMA)
    H0 = _v_angle_block(_engine_hessian(T, p, 1.0, 0.0, perp), T, p, 1.0, perp)
    assert float(H[-1, -1]) > 0.1 and float(H0[-1, -1]) == 0.0
    H1 = _v_angle_block(_engine_hessian(T, p, 1.0, 1e-6, perp), T, p, 1.0, perp)
    np.testing.assert_allclose(H1, H, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "act,vs",
    [(a, v) for a in ("binary", "relu") for v in (V_STAR, V_NOSADDLE)]
    + [("relu", [0.7]), ("binary", [1.0, 1.0, 0.0])],
)
def test_classification(act, vs):
    """Labels of stationary_points against classify_point (Hessian / one-sided
    slope) and against the engine's loss under small perturbations. [0.7]
    (m = 1) and [1, 1, 0] sit exactly on (m+1)|v*|^2 = 2 (1^T v*)^2."""
    T = teacher(act, vs)
    D = sd.Gaussian(SIGMA)
    margin = float(th.saddle_margin(T))
    exists = bool(th.saddle_exists(T))
    assert exists == (margin > 0)
    pts = th.stationary_points(T, SIGMA)
    kinds = {p.name: p.kind for p in pts}
    assert kinds["v_0"] == "global_min"
    assert kinds["v_pi"] == ("spurious_min" if exists else "saddle")
    assert ("v_bar" in kinds) == exists
    rng = np.random.default_rng(0)
    m = len(vs)
    for p in pts:
        label = th.classify_point(T, p.v, p.angle, SIGMA)
        if p.kind in ("global_min", "spurious_min"):
            assert label == "min", (p.name, label)
        elif p.name == "v_bar":
            assert label == "saddle"
        else:  # v_pi without the saddle: strict saddle, or degenerate at the merge
            assert label == ("degenerate" if margin == 0.0 else "saddle"), (p.name, label, margin)
        # Perturbations in the engine's loss, w fixed in norm (rho = 1.3).
        w = w_exact(T, p, 1.3)
        L = float(ploss(p.v, w, T, D))
        diffs = []
        for _ in range(40):
            dv = 1e-3 * rng.standard_normal(m)
            dpsi = 1e-3 * rng.standard_normal()
            ang = clip_angle(float(p.angle) + dpsi)
            w2 = wat(T.w, ang, 1.3, perp=f64(rng.standard_normal(3)))
            diffs.append(float(ploss(p.v + f64(dv), w2, T, D)) - L)
        if p.kind != "saddle":
            assert min(diffs) > 0, (p.name, min(diffs))
    # A descent direction at every saddle: move v along +-v* and the angle inward.
    for p in pts:
        if p.kind != "saddle":
            continue
        best = min(
            float(ploss(p.v + s * eps * T.v, wat(T.w, clip_angle(float(p.angle) + da), 1.3), T, D))
            for s in (1, -1)
            for eps in (1e-3, 1e-4, 1e-5)
            for da in (1e-2, -1e-2, 3e-2, -3e-2)
        )
        assert best < float(p.loss) - 1e-14, (p.name, best - float(p.loss))


def test_classify_rejects_non_stationary():
    T = teacher("relu")
    assert th.classify_point(T, th.optimal_v(T, 1.0, SIGMA), 1.0, SIGMA) == "not_stationary"
    assert th.classify_point(T, T.v, 0.0, SIGMA) == "not_stationary"


# ---------------------------------------------------------------------------
# Clipped-ReLU lambda and w0 (Proper-STE eq. 29-31, 110)


def _lambda_paper(t):
    e = math.exp(-t * t / 2)
    return (math.pi - t * e * math.sqrt(2 * math.pi) - math.pi * math.erfc(t / math.sqrt(2))) / (1 - e)


def test_lambda_values_and_limits():
    for t in [0.9, 1.0, 1.1, 1.5, 2.5, 4.0, 7.0]:
        assert abs(float(th.crelu_lambda(1.0 / t)) - _lambda_paper(t)) < 1e-13
    # Series branch: lambda = 2 sqrt(2 pi)/3 t (1 - t^2/20 + O(t^4)).
    for t in [1e-8, 1e-5, 1e-3]:
        ref = 2 * math.sqrt(2 * math.pi) / 3 * t * (1 - t * t / 20)
        assert abs(float(th.crelu_lambda(1.0 / t)) - ref) <= 1e-12 * ref
    assert float(th.crelu_lambda(1e-3)) == pytest.approx(math.pi, abs=1e-15)  # |w| -> 0
    assert float(th.crelu_lambda(1e9)) < 1e-8  # |w| -> inf
    # Depends on r / (sigma |w|) only.
    lam_rs = float(th.crelu_lambda(0.7, r=1.3, sigma=0.8))
    assert abs(lam_rs - float(th.crelu_lambda(0.7 * 0.8 / 1.3))) < 1e-14


def test_lambda_monotonicity_claim():
    """Proper-STE Sec. 3.2.3: "lambda monotonically increases from 0 to pi as
    r / (sigma |w|) increases" -- true. As a function of |w| it therefore
    decreases, from pi at |w| -> 0 to 0 at |w| -> inf."""
    t = np.concatenate([np.logspace(-6, 0.7, 400), np.linspace(5.02, 8.0, 50)])
    lam = np.asarray(jax.jit(th.crelu_lambda)(f64(1.0 / t)))
    assert np.all(np.diff(lam) > 0)
    assert lam[0] < 1e-5 and abs(lam[-1] - math.pi) < 1e-12 and lam.max() <= math.pi
    dlam = jax.jit(jax.vmap(jax.grad(lambda w: th.crelu_lambda(w, 1.3, 0.8))))
    dlam_dw = dlam(f64(np.logspace(-1, 2, 200)))
    assert np.all(np.asarray(dlam_dw) < 0)


def test_w0_root():
    t0 = float(th.crelu_t0())
    assert abs(_lambda_paper(t0) - 2.0) < 1e-14
    for r, s in [(1.0, 1.0), (1.3, 0.8), (0.2, 3.0)]:
        w0 = th.crelu_w0(r, s)
        assert abs(float(th.crelu_lambda(w0, r, s)) - 2.0) < 1e-14
        assert abs(float(w0) - r / (s * t0)) < 1e-15 * r / s
    w0_32 = th.crelu_w0(jnp.float32(1.3), jnp.float32(0.8))
    assert w0_32.dtype == jnp.float32 and abs(float(w0_32) - 1.3 / (0.8 * t0)) < 1e-6


def test_lambda_matches_engine_eq29():
    """Eq. 29 with lambda of eq. 30 against the engine's clipped-ReLU coarse
    gradient at angle 0, for random v (not only at the fixed point)."""
    T = teacher("relu")
    D = sd.Gaussian(SIGMA)
    r = 1.3
    m = 4
    rng = np.random.default_rng(1)
    A = jnp.eye(m) + jnp.ones((m, m))
    J = jnp.ones((m, m))
    a = SIGMA * float(jnp.linalg.norm(T.w))
    wh = T.w / jnp.linalg.norm(T.w)
    for rho in [0.2, 0.7, 1.24, 3.0, 20.0]:
        v = f64(rng.standard_normal(m))
        _, dw = cgrad(v, wat(T.w, 0.0, rho), T, D, ste="crelu", r=r)
        t = r / (SIGMA * rho)
        lam = th.crelu_lambda(rho, r, SIGMA)
        ref = SIGMA / (2 * math.sqrt(2 * math.pi)) * (1 - math.exp(-t * t / 2)) * (
            v @ A @ v - 2 * a / math.sqrt(2 * math.pi) * v @ ((lam - 1) * jnp.eye(m) + J) @ T.v
        )
        np.testing.assert_allclose(dw, ref * wh, rtol=0, atol=1e-12)


def test_C0_against_eq110_and_quadrature():
    # Small t: C0 = |w*| int_0^t x^2 phi(x) dx = |w*| (t^3/3 - t^5/10 + ...) / sqrt(2 pi);
    # both printed forms (eq. 106 and eq. 110) cancel there.
    t = 1e-4
    ref = 1.7 * (t**3 / 3 - t**5 / 10) / math.sqrt(2 * math.pi)
    assert abs(float(th.crelu_C0(1e4, 1.0, 1.0, 1.7)) - ref) < 1e-25
    for wn, r, s, wsn in [(1.0, 1.0, 1.0, 1.0), (0.4, 1.3, 0.8, 1.7), (5.0, 0.5, 2.0, 0.3), (0.05, 1, 1, 1)]:
        t = r / (s * wn)
        paper = wsn / (2 * math.pi) * (
            math.pi
            - t * math.exp(-t * t / 2) * math.sqrt(2 * math.pi)
            - math.pi * math.erfc(t / math.sqrt(2))
        )
        # Eq. 106 at phi = 0 (theta integral) with r / w -> t.
        def g(theta):
            x = (t / math.cos(theta)) ** 2
            return math.cos(theta) ** 2 * (2 - (x + 2) * math.exp(-0.5 * x))

        quad = integrate.quad(g, -math.pi / 2, math.pi / 2, epsabs=1e-15, epsrel=1e-13)[0]
        quad *= wsn / (2 * math.pi)
        got = float(th.crelu_C0(wn, r, s, wsn))
        assert abs(got - quad) <= 1e-12 * abs(quad) + 1e-300
        if t > 0.3:  # eq. 110 itself cancels at small t (1e-11 lost at t = 0.05)
            assert abs(got - paper) <= 1e-12 * abs(paper)


# ---------------------------------------------------------------------------
# Correlations (Yin Lemma 5, 8; derived analogues)


@pytest.mark.parametrize(
    "act,ste",
    [("binary", "relu"), ("binary", "identity"), ("binary", "crelu"), ("relu", "relu"), ("relu", "identity")],
)
def test_correlation_against_engine(act, ste):
    T = teacher(act, ws=[0.9, -1.2, 0.5])
    D = sd.Gaussian(SIGMA)
    rng = np.random.default_rng(2)
    for _ in range(6):
        v = f64(rng.standard_normal(4))
        w = f64(rng.standard_normal(3)) * rng.uniform(0.2, 3.0)
        r = float(rng.uniform(0.3, 2.0))
        _, cg = cgrad(v, w, T, D, ste=ste, r=r)
        _, tg = pgrad(v, w, T, D)
        ref = float(cg @ tg)
        got = float(th.coarse_true_correlation(v, w, T, SIGMA, ste=ste, r=r))
        assert got >= 0
        assert abs(got - ref) <= 1e-10 * (abs(ref) + 1e-3 * grad_scale(T) ** 2 / float(jnp.linalg.norm(w)))
    # Unit input, |w*| = 1, the papers' setting: Lemma 5 vs Lemma 8 differ by 2.
    Tb = teacher("binary", ws=[1.0, 0.0, 0.0])
    v, w = f64([0.3, -1.0, 0.2, 0.5]), f64([0.1, 0.8, -0.4])
    c5 = float(th.coarse_true_correlation(v, w, Tb, 1.0, ste="relu"))
    c8 = float(th.coarse_true_correlation(v, w, Tb, 1.0, ste="identity"))
    theta = math.acos(0.1 / math.sqrt(0.81))
    assert abs(c5 - math.sin(theta) * float(v @ Tb.v) ** 2 / (2 * math.sqrt(2 * math.pi) ** 3 * 0.9)) < 1e-15
    assert abs(c8 - 2 * c5) < 1e-15


# ---------------------------------------------------------------------------
# Distances, dtypes, tracing, validation


def test_distance_to_point():
    T = teacher("relu")
    pts = th.stationary_points(T, SIGMA, ste="crelu", r=1.3)
    p0 = pts[0]
    d = th.distance_to_point(p0.v, wat(T.w, 0.0, p0.w_norm), T, p0)
    assert float(d.v) == 0 and float(d.angle) < 1e-7 and float(d.log_scale) < 1e-15
    d = jax.jit(th.distance_to_point)(p0.v + 0.1, wat(T.w, 0.3, 2 * p0.w_norm), T, p0)
    assert abs(float(d.v) - 0.2) < 1e-14 and abs(float(d.angle) - 0.3) < 1e-12
    assert abs(float(d.log_scale) - math.log(2)) < 1e-14
    pb = pts[1]
    d = th.distance_to_point(pb.v, wat(T.w, pb.angle, 7.0), T, pb)
    assert float(d.v) == 0 and float(d.angle) < 1e-12 and float(d.log_scale) == 0


def test_float32_preserved_and_traceable():
    T = sd.Teacher(v=jnp.asarray(V_STAR, jnp.float32), w=jnp.asarray(W_STAR, jnp.float32), activation="relu")

    @jax.jit  # one trace: the traceable API under jit, in float32
    def everything(T, s, ang):
        return (
            th.optimal_v(T, ang, s),
            *th.saddle_point(T, s)[:2],
            th.stationary_loss(T, ang, s),
            th.loss_hessian(T, T.v, ang, s),
            th.coarse_true_correlation(T.v, T.w + 1.0, T, s),
            th.crelu_lambda(ang),
            th.crelu_w0(1.0, s),
            th.saddle_margin(T),
        )

    outs = everything(T, jnp.float32(SIGMA), jnp.float32(0.7))
    assert all(o.dtype == jnp.float32 for o in outs)
    for p in th.stationary_points(T, SIGMA):
        assert p.v.dtype == jnp.float32 and p.loss.dtype == jnp.float32
    T64 = teacher("relu")
    ref = (  # float64, eager (ops already compiled by the tests above)
        th.optimal_v(T64, 0.7, SIGMA),
        *th.saddle_point(T64, SIGMA)[:2],
        th.stationary_loss(T64, 0.7, SIGMA),
        th.loss_hessian(T64, T64.v, 0.7, SIGMA),
        th.coarse_true_correlation(T64.v, T64.w + 1.0, T64, SIGMA),
        th.crelu_lambda(0.7),
        th.crelu_w0(1.0, SIGMA),
        th.saddle_margin(T64),
    )
    for o32, o64 in zip(outs, ref):
        np.testing.assert_allclose(np.asarray(o32, np.float64), o64, rtol=2e-5, atol=1e-6)
    # vmap and grad in sigma: L0 = sigma^2 |w*|^2 (pi - 2)/(4 pi) |v*|^2.
    L0 = lambda s: th.stationary_loss(T64, 0.0, s)
    g = jax.jit(jax.vmap(jax.grad(L0)))(f64([0.5, SIGMA]))
    assert abs(float(g[1]) - 2 * float(L0(SIGMA)) / SIGMA) < 1e-14


def test_bad_input_names_the_argument():
    T = teacher("relu")
    cases = [
        (lambda: th.stationary_points("x"), "teacher"),
        (lambda: th.global_min(sd.Teacher(v=T.v, w=T.w, activation="tanh")), "teacher.activation"),
        (lambda: th.global_min(sd.Teacher(v=f64([0.0, 0.0]), w=f64(W_STAR))), "teacher.v"),
        (lambda: th.global_min(sd.Teacher(v=f64(V_STAR), w=f64([0.0, 0.0, 0.0]))), "teacher.w"),
        (lambda: th.optimal_v(T, 0.3, sigma=-1.0), "sigma"),
        (lambda: th.optimal_v(T, 0.3, sigma=f64([1.0, 2.0])), "sigma"),
        (lambda: th.optimal_v(T, 0.3, sigma=sd.Empirical(jnp.zeros((2, 4, 3)))), "sigma"),
        (lambda: th.stationary_points(T, ste="sigmoid"), "ste"),
        (lambda: th.coarse_true_correlation(T.v, T.w, T, ste="crelu"), "ste"),
        (lambda: th.coarse_true_correlation(T.v, f64([0.0, 0.0, 0.0]), T), "w"),
        (lambda: th.coarse_true_correlation(f64([1.0]), T.w, T), "v"),
        (lambda: th.loss_hessian(T, f64([1.0, 2.0]), 0.3), "v"),
        (lambda: th.crelu_lambda(0.0), "w_norm"),
        (lambda: th.crelu_lambda(1.0, r=0.0), "r"),
        (lambda: th.crelu_w0(r=-1.0), "r"),
        (lambda: th.crelu_w0(sigma=float("nan")), "sigma"),
        (lambda: th.w_at_angle(T.w, 4.0), "angle"),
        (lambda: th.w_at_angle(T.w, 1.0, perp=T.w), "perp"),
        (lambda: th.w_at_angle(T.w, 1.0, norm=0.0), "norm"),
        (lambda: th.distance_to_point(T.v, T.w, T, "v_0"), "point"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            fn()
