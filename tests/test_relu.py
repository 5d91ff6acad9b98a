"""ReLU closed forms (Tian Thm. 1, Lee-Sim-Ye Lemma 2.1) and the ReLU models'
population loss and gradient, against Monte Carlo (tolerance from the
standard error), autodiff, finite differences and the papers' identities."""

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd

N_MC = 400_000


def _unit(rng, d):
    x = rng.normal(size=d)
    return x / np.linalg.norm(x)


def _at(u, theta, rng, norm=1.0):
    """A vector at exact angle theta to u."""
    u = np.asarray(u) / np.linalg.norm(u)
    e = rng.normal(size=u.shape)
    e -= e @ u * u
    e /= np.linalg.norm(e)
    return norm * (math.cos(theta) * u + math.sin(theta) * e)


@pytest.fixture(scope="module")
def X():
    return np.asarray(jax.random.normal(jax.random.key(7), (N_MC, 4), jnp.float64))


def _mc(samples):
    """Mean and standard error along axis 0."""
    s = np.asarray(samples)
    return s.mean(axis=0), s.std(axis=0, ddof=1) / math.sqrt(s.shape[0])


@pytest.mark.parametrize("theta", [0.0, 1e-3, 0.7, 2.0, math.pi - 1e-3, math.pi])
def test_tian_theorem1_against_monte_carlo(X, theta):
    """E[1{e.x>0} 1{w.x>0} x x^T] w = ((pi - theta) w + |w| sin(theta) e) / (2 pi) (Tian Thm. 1, N = 1)."""
    rng = np.random.default_rng(int(theta * 1000))
    e = _unit(rng, 4)
    w = _at(e, theta, rng, norm=1.7)
    F = np.asarray(sd.relu_gated_moment(jnp.asarray(e), jnp.asarray(w)))
    gate = (X @ e > 0) & (X @ w > 0)
    mean, se = _mc(gate[:, None] * X * (X @ w)[:, None])
    assert np.all(np.abs(F - mean) <= 5 * se + 1e-12), (F, mean, se)
    # the check has teeth: the standard error is small against the moment
    assert np.max(se) < 0.01 * max(np.linalg.norm(F), 0.1)
    # the paper's form written out
    ref = ((math.pi - theta) * w + np.linalg.norm(w) * math.sin(theta) * e) / (2 * math.pi)
    np.testing.assert_allclose(F, ref, rtol=1e-12, atol=1e-14)


def test_tian_theorem1_limits_and_scale():
    rng = np.random.default_rng(1)
    e = jnp.asarray(_unit(rng, 5))
    w = 2.5 * e
    np.testing.assert_allclose(sd.relu_gated_moment(e, w), w / 2, rtol=1e-15)  # theta = 0
    np.testing.assert_allclose(sd.relu_gated_moment(e, -w), 0.0, atol=1e-16)  # theta = pi
    # only e's direction matters
    w2 = jnp.asarray(_at(np.asarray(e), 1.1, rng))
    np.testing.assert_allclose(sd.relu_gated_moment(3.0 * e, w2), sd.relu_gated_moment(e, w2), rtol=1e-14)


@pytest.mark.parametrize("theta", [0.0, 0.4, 1.9, math.pi])
def test_relu_kernel_against_monte_carlo(X, theta):
    """E[relu(u.x) relu(v.x)] = |u||v| (sin t + (pi - t) cos t) / (2 pi) (Lee-Sim-Ye Lemma 2.1)."""
    rng = np.random.default_rng(3)
    u = 0.8 * _unit(rng, 4)
    v = _at(u, theta, rng, norm=1.3)
    k = float(sd.relu_kernel(jnp.asarray(u), jnp.asarray(v)))
    mean, se = _mc(np.maximum(X @ u, 0) * np.maximum(X @ v, 0))
    assert abs(k - mean) <= 5 * se + 1e-14
    if theta < 3:
        assert se < 0.01 * k


def test_gated_moment_is_gradient_of_kernel():
    """d/du E[relu(u.x) relu(w.x)] = E[1{u.x>0} x relu(w.x)] = Tian's F(u, w)."""
    rng = np.random.default_rng(4)
    for theta in (0.3, 1.5, 2.8):
        u = jnp.asarray(_unit(rng, 6) * 1.4)
        w = jnp.asarray(_at(np.asarray(u), theta, rng, 0.6))
        g = jax.grad(sd.relu_kernel)(u, w)
        np.testing.assert_allclose(g, sd.relu_gated_moment(u, w), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("theta", [0.0, 0.9, 2.4, math.pi])
def test_lemma21_truncated_covariance(X, theta):
    """Lemma 2.1: the printed 1/sin form (generic angles), the limits I/2 and 0, and Monte Carlo."""
    rng = np.random.default_rng(5)
    u = _unit(rng, 4)
    v = _at(u, theta, rng)
    M = np.asarray(sd.truncated_covariance(jnp.asarray(u), jnp.asarray(v)))
    if 0 < theta < math.pi:
        s, c = math.sin(theta), math.cos(theta)
        ref = 0.5 * (1 - theta / math.pi) * np.eye(4) + (
            -c * (np.outer(u, u) + np.outer(v, v)) + np.outer(v, u) + np.outer(u, v)
        ) / (2 * math.pi * s)
        np.testing.assert_allclose(M, ref, rtol=1e-12, atol=1e-14)
    elif theta == 0:
        np.testing.assert_allclose(M, 0.5 * np.eye(4), atol=1e-15)  # the lemma's first identity
    else:
        np.testing.assert_allclose(M, 0.0, atol=1e-15)
    gate = ((X @ u > 0) & (X @ v > 0)).astype(float)
    mean, se = _mc(gate[:, None, None] * X[:, :, None] * X[:, None, :])
    assert np.all(np.abs(M - mean) <= 5 * se + 1e-12)
    # M(e, w) w is Tian's F(e, w)
    w = 1.9 * v
    np.testing.assert_allclose(M @ w, sd.relu_gated_moment(jnp.asarray(u), jnp.asarray(w)), rtol=1e-12, atol=1e-14)


def test_closed_forms_finite_at_edges_float32():
    """Angle 0 and pi, a tiny argument: finite values and gradients; float32 stays float32."""
    fns = (sd.relu_kernel, lambda a, b: jnp.sum(sd.relu_gated_moment(a, b)),
           lambda a, b: jnp.sum(sd.truncated_covariance(a, b)))
    for dt in (jnp.float32, jnp.float64):
        u = jnp.asarray([0.6, -0.8, 0.0], dt)
        V = jnp.stack([u, -u, 1e-30 * u, jnp.zeros(3, dt), jnp.asarray([0.0, 0.0, 1.0], dt)])
        for f in fns:
            val, g = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1)), in_axes=(None, 0)))(u, V)
            assert val.dtype == dt
            assert all(bool(jnp.all(jnp.isfinite(x))) for x in (val,) + g)
    np.testing.assert_allclose(float(sd.relu_kernel(u, u)), 0.5, rtol=1e-15)
    np.testing.assert_allclose(float(sd.relu_kernel(u, -u)), 0.0, atol=1e-16)


# ---------------------------------------------------------------------------
# Models


def _network(rng, K=2, Kt=3, d=4, train_v=True, dtype=np.float64):
    Ws = rng.normal(size=(Kt, d)).astype(dtype)
    vs = rng.normal(size=Kt).astype(dtype)
    M = sd.ReLUNetwork(jnp.asarray(Ws), jnp.asarray(vs), sigma=1.3)
    p = {"w": jnp.asarray(rng.normal(size=(K, d)).astype(dtype))}
    if train_v:
        p["v"] = jnp.asarray(rng.normal(size=K).astype(dtype))
    return M, p


def _cnn(rng, m=3, n=4, dtype=np.float64):
    T = sd.Teacher(jnp.asarray(rng.normal(size=m).astype(dtype)), jnp.asarray(rng.normal(size=n).astype(dtype)), "relu")
    M = sd.ReLUCNN(T, sigma=0.7)
    p = {"v": jnp.asarray(rng.normal(size=m).astype(dtype)), "w": jnp.asarray(rng.normal(size=n).astype(dtype))}
    return M, p


def _neuron(rng, depth, d=4, dtype=np.float64):
    M = sd.ReLUNeuron(jnp.asarray(rng.normal(size=d).astype(dtype)), depth=depth, sigma=1.1)
    p = M.balanced(jnp.asarray(rng.normal(size=d).astype(dtype)))
    if depth > 1:  # off balance, so every v_k enters differently
        p["v"] = p["v"] * jnp.asarray(rng.uniform(0.7, 1.3, size=depth - 1).astype(dtype))
    return M, p


def _cases(dtype=np.float64):
    rng = np.random.default_rng(11)
    return [
        ("net_fixed_v", *_network(rng, train_v=False, dtype=dtype)),
        ("net_train_v", *_network(rng, train_v=True, dtype=dtype)),
        ("cnn", *_cnn(rng, dtype=dtype)),
        ("neuron1", *_neuron(rng, 1, dtype=dtype)),
        ("neuron4", *_neuron(rng, 4, dtype=dtype)),
    ]


CASES = _cases()


@pytest.mark.parametrize("name,M,p", CASES, ids=[c[0] for c in CASES])
def test_model_grad_matches_autodiff_and_finite_differences(name, M, p):
    g = jax.jit(M.grad)(p)
    ga = jax.jit(jax.grad(M.loss))(p)
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    gf, _ = jax.flatten_util.ravel_pytree(g)
    gaf, _ = jax.flatten_util.ravel_pytree(ga)
    np.testing.assert_allclose(gf, gaf, rtol=1e-11, atol=1e-13 * np.max(np.abs(gaf)))
    h = 1e-6
    lf = jax.jit(jax.vmap(lambda f: M.loss(unravel(f))))
    E = h * np.eye(flat.size)
    fd = (np.asarray(lf(flat + E)) - np.asarray(lf(flat - E))) / (2 * h)
    np.testing.assert_allclose(gf, fd, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd)))


@pytest.mark.parametrize("name,M,p", CASES, ids=[c[0] for c in CASES])
def test_model_loss_and_grad_against_monte_carlo(name, M, p):
    """Per-sample loss and its gradient (relu'(0) = 0), written from the definition."""
    X = M.sample_inputs(jax.random.key(3), 200_000)
    per = jax.jit(jax.vmap(lambda x: 0.5 * (M.predict(p, x[None])[0] - M.teacher_predict(x[None])[0]) ** 2))
    vals = np.asarray(per(X))
    mean, se = _mc(vals)
    L = float(M.loss(p))
    assert abs(L - mean) <= 5 * se, (L, mean, se)
    assert se < 0.02 * L
    grads = jax.jit(jax.vmap(jax.grad(lambda q, x: 0.5 * (M.predict(q, x[None])[0] - M.teacher_predict(x[None])[0]) ** 2),
                             in_axes=(None, 0)))(p, X)
    gf, _ = jax.flatten_util.ravel_pytree(M.grad(p))
    G = np.concatenate([np.asarray(grads[k]).reshape(X.shape[0], -1) for k in sorted(p)], axis=1)
    gref = np.concatenate([np.asarray(M.grad(p)[k]).reshape(-1) for k in sorted(p)])
    gm, gse = _mc(G)
    assert np.all(np.abs(gref - gm) <= 5 * gse + 1e-12), (gref, gm, gse)
    assert np.linalg.norm(gse) < 0.05 * np.linalg.norm(gref)


@pytest.mark.parametrize("name,M,p", _cases(np.float32), ids=[c[0] for c in CASES])
def test_model_float32_dtype_preserved_and_close_to_float64(name, M, p):
    L, g = M.loss(p), M.grad(p)
    assert L.dtype == jnp.float32 and all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(g))
    M64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), M)
    p64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), p)
    np.testing.assert_allclose(float(L), float(M64.loss(p64)), rtol=2e-5)
    gf, _ = jax.flatten_util.ravel_pytree(g)
    g64, _ = jax.flatten_util.ravel_pytree(M64.grad(p64))
    np.testing.assert_allclose(gf, g64, rtol=1e-4, atol=1e-5 * np.max(np.abs(g64)))
    mets = M.metrics(p, g)
    assert set(mets) == set(M.metric_names)
    assert all(x.dtype == jnp.float32 for x in mets.values())


def test_models_jit_vmap_plain_agree():
    rng = np.random.default_rng(2)
    M, _ = _network(rng, K=2, Kt=2, train_v=False)
    Wb = jnp.asarray(rng.normal(size=(5, 2, 4)))
    plain = np.stack([np.asarray(M.grad({"w": w})["w"]) for w in Wb])
    vm = jax.vmap(lambda w: M.grad({"w": w})["w"])(Wb)
    jt = jax.jit(jax.vmap(lambda w: M.grad({"w": w})["w"]))(Wb)
    np.testing.assert_allclose(vm, plain, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jt, plain, rtol=1e-13, atol=1e-15)
    # a batched teacher through vmap of the model itself
    Wsb = jnp.asarray(rng.normal(size=(5, 2, 4)))
    Lb = jax.vmap(lambda ws, w: sd.ReLUNetwork(ws).loss({"w": w}))(Wsb, Wb)
    np.testing.assert_allclose(Lb, [float(sd.ReLUNetwork(a).loss({"w": b})) for a, b in zip(Wsb, Wb)], rtol=1e-13)


def test_tian_eq48_one_unit_gradient():
    """Tian eq. 48 (N = 1): grad = (w - w*)/2 + (theta w* - |w*| sin(theta) w/|w|) / (2 pi)."""
    rng = np.random.default_rng(8)
    ws = rng.normal(size=5)
    for theta in (0.0, 0.5, 2.0, math.pi):
        w = _at(ws, theta, rng, norm=0.7)
        g = sd.ReLUNetwork(jnp.asarray(ws[None])).grad({"w": jnp.asarray(w[None])})["w"][0]
        ref = (w - ws) / 2 + (theta * ws - np.linalg.norm(ws) * math.sin(theta) * w / np.linalg.norm(w)) / (2 * math.pi)
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("K", [2, 4])
def test_tian_theorem7_symmetric_saddle(K):
    """Tian Thm. 7 / Lemma 9: orthonormal teacher, w_j = x e_j + y sum_{k != j} e_k.
    On x = y the x-component of the gradient is K (x - x*) / 2 with
    x* = (sqrt(K - 1) - arccos(1/sqrt K) + pi) / (pi K), and the gradient vanishes at x = y = x*."""
    M = sd.ReLUNetwork(jnp.eye(K))
    xs = (math.sqrt(K - 1) - math.acos(1 / math.sqrt(K)) + math.pi) / (math.pi * K)

    def W(x, y):
        return jnp.asarray(np.full((K, K), y) + (x - y) * np.eye(K))

    grad = jax.jit(lambda w: M.grad({"w": w})["w"])
    g = np.asarray(grad(W(xs, xs)))
    assert np.max(np.abs(g)) < 1e-14
    for x in (0.2, 0.9):
        g = np.asarray(grad(W(x, x)))
        np.testing.assert_allclose(g[0, 0], K * (x - xs) / 2, rtol=1e-12)
        np.testing.assert_allclose(g, g[0, 0], rtol=1e-12)  # symmetric: every entry equal on x = y
    # the teacher itself: zero loss
    assert float(jax.jit(M.loss)({"w": W(1.0, 0.0)})) < 1e-15
    # The symmetric point is a saddle: the loss drops along the direction that
    # separates the units (seen directly, and as a negative Hessian eigenvalue)
    D = np.zeros((K, K))
    D[0, 0], D[0, 1], D[1, 0], D[1, 1] = 1, -1, -1, 1
    L = jax.jit(lambda w: M.loss({"w": w}))
    assert float(L(W(xs, xs) + 1e-3 * D)) < float(L(W(xs, xs)))
    assert float(jax.jit(M.hessian_min_ratio)({"w": W(xs, xs)})) < -1e-2


def test_neuron_prop31_prop36_identities():
    """The model's exact gradient gives Prop. 3.1 eq. 5 / Prop. 3.6's dw/dt, and by
    the chain rule the magnitude/angle rates of eq. 6-7 and 9-10 (balanced)."""
    rng = np.random.default_rng(9)
    for depth in (1, 2, 3, 5):
        ws = rng.normal(size=6)
        vs = float(np.linalg.norm(ws))
        M = sd.ReLUNeuron(jnp.asarray(ws), depth=depth)
        for theta in (0.3, 1.6, 3.0):
            w = _at(ws, theta, rng, norm=rng.uniform(0.2, 2.0))
            p = M.balanced(jnp.asarray(w))
            g = M.grad(p)
            v = float(np.linalg.norm(w))
            phi = math.pi - theta
            m = depth - 1
            dw = -0.5 * v ** (2 * m) * w + 0.5 * v**m * vs**m * (phi / math.pi * ws + vs / v * math.sin(phi) / math.pi * w)
            np.testing.assert_allclose(-np.asarray(g["w"]), dw, rtol=1e-12, atol=1e-14)
            dv, dphi = sd.neuron_ode(v, phi, v_star=vs, depth=depth)
            wh = w / v
            np.testing.assert_allclose(-np.asarray(g["w"]) @ wh, dv, rtol=1e-11, atol=1e-14)
            # d theta/dt = -(d cos theta/dt) / sin theta
            u = ws / vs
            dcos = u @ (dw - (dw @ wh) * wh) / v
            np.testing.assert_allclose(dcos / math.sin(theta), dphi, rtol=1e-10)
            if m:  # balanced stays balanced: dv_k/dt = d|w|/dt
                np.testing.assert_allclose(-np.asarray(g["v"]), dv, rtol=1e-11, atol=1e-14)


def test_model_validation_errors():
    M = sd.ReLUNetwork(jnp.eye(3)[:2])
    with pytest.raises(ValueError, match="params must have the keys"):
        M.check_params({"W": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match=r"params\['w'\] must have shape \(K, d\)"):
        M.check_params({"w": jnp.ones((2, 4))})
    with pytest.raises(ValueError, match="zero row"):
        M.check_params({"w": jnp.zeros((2, 3))})
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        sd.ReLUNeuron(jnp.ones(3), depth=0)
    with pytest.raises(ValueError, match="needs teacher activation 'relu'"):
        sd.ReLUCNN(sd.Teacher(jnp.ones(2), jnp.ones(3), "binary")).check_params({"v": jnp.ones(2), "w": jnp.ones(3)})
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        sd.ReLUNeuron(jnp.ones(3), sigma=-1.0).check_params({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match=r"params\['v'\] must have shape \(depth - 1,\)"):
        sd.ReLUNeuron(jnp.ones(3), depth=3).check_params({"w": jnp.ones(3), "v": jnp.ones(3)})
