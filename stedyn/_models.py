"""ReLU student models on Gaussian input: exact population loss and gradient.

A *model* is a frozen dataclass registered as a pytree. Its array fields
(the teacher, ``sigma``) are leaves, so a model can be batched and traced;
its static fields (``depth``) are not. The trained parameters are a dict of
arrays. Every model provides pure, ``jit``/``vmap``/``grad``-composable

* ``loss(params)``: the population loss ``E[(f(x) - f*(x))^2] / 2``,
* ``grad(params)``: its exact gradient, written from the papers' closed forms
  (not autodiff; the tests check it against autodiff, finite differences and
  Monte Carlo),
* ``metrics(params, grad)``: the recorded quantities (:attr:`Model.metric_names`),
* ``predict(params, X)`` / ``teacher_predict(X)`` and ``empirical_loss(params, X)``
  on a sample, and ``sample_inputs(key, N)`` to draw one (Monte Carlo),

and :func:`stedyn.run` / :func:`stedyn.flow` accept any of them
(``sd.run(model, params0, lr=..., steps=...)``).

Models:

* :class:`ReLUNetwork` -- Tian (2017): ``f(x) = sum_j v_j relu(w_j . x)``
  with ``K`` hidden units, teacher ``f*`` of the same form with ``K*`` units;
  ``v`` is fixed to ones (Tian's setting, eq. 68) unless ``params`` has a
  ``"v"`` entry, which is then trained too.
* :class:`ReLUCNN` -- the one-hidden-layer CNN ``y = v^T relu(Z w)`` with a
  ReLU (not binary) student, input rows i.i.d. ``N(0, sigma^2 I)``, teacher
  ``v*^T relu(Z w*)`` (an :class:`stedyn.Teacher` with ``activation="relu"``).
* :class:`ReLUNeuron` -- Lee, Sim, Ye: the ``depth``-layer single ReLU neuron
  ``f(x) = v_1 relu(v_2 ... relu(v_m relu(w . x)))``, ``m = depth - 1``.

All moments are for input ``x ~ N(0, sigma^2 I)``: ``sigma^2`` times those
of :mod:`stedyn._relu`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as nm
from ._model import Teacher, _check_floating, _concrete
from ._relu import INV_2PI, relu_angle, relu_gated_moment, relu_kernel

_MAX_PERM_K = 7  # teacher_dist enumerates the K! matchings of units


def _register(cls, data, meta=()):
    return jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=list(meta))


def _as_float(name, x, ndim):
    return _check_floating(name, x, ndim)


def _sigma_check(sigma):
    s = jnp.asarray(sigma) if not isinstance(sigma, jax.core.Tracer) else sigma
    if s.ndim != 0:
        raise ValueError(f"sigma must be a scalar; got shape {tuple(s.shape)}")
    c = _concrete(s)
    if c is not None and not (np.isfinite(c) and c > 0):
        raise ValueError(f"sigma must be a finite number > 0; got {c}")


def _params_dict(params, required, optional=()):
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict with keys {required + optional}; got {type(params).__name__}")
    extra = set(params) - set(required) - set(optional)
    missing = [k for k in required if k not in params]
    if missing or extra:
        raise ValueError(
            f"params must have the keys {list(required)}" + (f" and optionally {list(optional)}" if optional else "")
            + f"; got {sorted(params)}"
        )


def _dtype_of(params, *arrays):
    leaves = [x for x in jax.tree_util.tree_leaves(params)]
    return jnp.result_type(*leaves) if leaves else jnp.result_type(*arrays)


class Model:
    """Base class of the ReLU models (see the module docstring).

    Subclasses set :attr:`metric_names` and implement ``loss``, ``grad``,
    ``metrics``, ``predict``, ``teacher_predict``, ``sample_inputs``,
    ``check_params``, ``param_event_ndims``, ``field_event_ndims`` and
    ``norms``.
    """

    metric_names: tuple = ()

    def empirical_loss(self, params, X):
        """Sample mean of ``(f(x) - f*(x))^2 / 2`` over the rows of ``X``.

        Autodiff of it gives the Monte-Carlo gradient with ``relu'(0) = 0``.
        """
        d = self.predict(params, X) - self.teacher_predict(X)
        return 0.5 * jnp.mean(d * d)

    def zero_loss(self, dtype=None):
        """``E[f*(x)^2] / 2``, the loss of the zero network (normalizes ``rel_loss``)."""
        raise NotImplementedError

    def hessian_min_ratio(self, params):
        """``lambda_min / max |lambda|`` of the loss Hessian (forward-mode autodiff of :meth:`grad`)."""
        flat, unravel = _ravel(params)
        # forward-mode derivative of the closed-form gradient: the Hessian,
        # cheaper to compile than autodiff twice through the loss
        H = jax.jacfwd(lambda f: _ravel(self.grad(unravel(f)))[0])(flat)
        H = 0.5 * (H + H.T)
        ev = jnp.linalg.eigvalsh(H)
        scale = jnp.max(jnp.abs(ev))
        return jnp.where(scale > 0, ev[0] / jnp.where(scale > 0, scale, 1.0), 0.0)


def _ravel(params):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    shapes = [x.shape for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = jnp.concatenate([x.reshape(-1) for x in leaves])

    def unravel(f):
        out, i = [], 0
        for s, n in zip(shapes, sizes):
            out.append(f[i:i + n].reshape(s))
            i += n
        return jax.tree_util.tree_unflatten(treedef, out)

    return flat, unravel


def _grad_norm(g):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(g)))


# ---------------------------------------------------------------------------
# Tian: K hidden ReLU units


@dataclasses.dataclass(frozen=True)
class ReLUNetwork(Model):
    """Two-layer ReLU network ``f(x) = sum_j v_j relu(w_j . x)`` (Tian 2017).

    Params: ``{"w": (K, d)}`` (output weights fixed to 1, Tian's eq. 68) or
    ``{"w": (K, d), "v": (K,)}`` (output weights trained too).

    Population loss (``kappa`` = :func:`stedyn.relu_kernel`)::

        L = sigma^2 / 2 (v^T K_ss v - 2 v^T K_st v* + v*^T K_tt v*),
        K_ss[j, k] = kappa(w_j, w_k), K_st[j, k] = kappa(w_j, w*_k), ...

    and its gradient from Tian's Theorem 1 (his eq. 11 with output weights)::

        dL/dw_j = sigma^2 v_j (sum_k v_k F(w_j, w_k) - sum_k v*_k F(w_j, w*_k)),
        dL/dv = sigma^2 (K_ss v - K_st v*),

    ``F(e, w) = ((pi - theta) w + |w| sin(theta) e^) / (2 pi)``
    (:func:`stedyn.relu_gated_moment`).

    Attributes:
      teacher_w: teacher weights ``w*``, shape (K*, d).
      teacher_v: teacher output weights, shape (K*,); ``None`` means ones.
      sigma: input std (``x ~ N(0, sigma^2 I)``), scalar > 0.
    """

    teacher_w: Any
    teacher_v: Any = None
    sigma: Any = 1.0

    metric_names = ("loss", "rel_loss", "teacher_dist", "grad_norm", "angle", "w_norm_min", "w_norm_max")

    # shapes and validation ------------------------------------------------
    def _teacher(self, dtype=None):
        W = jnp.asarray(self.teacher_w)
        dtype = dtype or W.dtype
        v = jnp.ones(W.shape[:-1], dtype) if self.teacher_v is None else jnp.asarray(self.teacher_v).astype(dtype)
        return W.astype(dtype), v

    def check_params(self, params):
        """Validate one configuration (shapes, dtypes, finiteness); returns params."""
        _params_dict(params, ("w",), ("v",))
        W = _as_float("params['w']", params["w"], 2)
        Ws = _as_float("teacher_w", self.teacher_w, 2)
        if W.shape[1] != Ws.shape[1]:
            raise ValueError(f"params['w'] must have shape (K, d) with d = {Ws.shape[1]} (teacher_w's); got {W.shape}")
        if W.shape[0] < 1 or Ws.shape[0] < 1:
            raise ValueError("params['w'] and teacher_w need at least one unit (K >= 1)")
        if "v" in params:
            v = _as_float("params['v']", params["v"], 1)
            if v.shape != (W.shape[0],):
                raise ValueError(f"params['v'] must have shape (K,) = ({W.shape[0]},); got {v.shape}")
        if self.teacher_v is not None:
            tv = _as_float("teacher_v", self.teacher_v, 1)
            if tv.shape != (Ws.shape[0],):
                raise ValueError(f"teacher_v must have shape (K*,) = ({Ws.shape[0]},); got {tv.shape}")
        _sigma_check(self.sigma)
        cw = _concrete(Ws)
        if cw is not None and np.any(np.all(cw == 0, axis=-1)):
            raise ValueError("teacher_w must have no zero row (every teacher unit nonzero)")
        cw = _concrete(W)
        if cw is not None and np.any(np.all(cw == 0, axis=-1)):
            raise ValueError("params['w'] must have no zero row (a unit's direction is undefined at 0)")
        return params

    def param_event_ndims(self, params):
        return {k: {"w": 2, "v": 1}[k] for k in params}

    def field_event_ndims(self):
        return dataclasses.replace(
            self, teacher_w=2, teacher_v=None if self.teacher_v is None else 1, sigma=0
        )

    # closed forms ---------------------------------------------------------
    def _v(self, params, W):
        return params["v"] if "v" in params else jnp.ones(W.shape[:-1], W.dtype)

    def loss(self, params):
        """Exact population loss (scalar)."""
        W = params["w"]
        Ws, vs = self._teacher(W.dtype)
        v = self._v(params, W)
        s2 = jnp.asarray(self.sigma).astype(W.dtype) ** 2
        Kss = relu_kernel(W[:, None, :], W[None, :, :])
        Kst = relu_kernel(W[:, None, :], Ws[None, :, :])
        Ktt = relu_kernel(Ws[:, None, :], Ws[None, :, :])
        return 0.5 * s2 * (v @ Kss @ v - 2.0 * (v @ Kst @ vs) + vs @ Ktt @ vs)

    def zero_loss(self, dtype=None):
        Ws, vs = self._teacher(dtype)
        s2 = jnp.asarray(self.sigma).astype(Ws.dtype) ** 2
        return 0.5 * s2 * (vs @ relu_kernel(Ws[:, None, :], Ws[None, :, :]) @ vs)

    def grad(self, params):
        """Exact population gradient from Tian's Theorem 1; same structure as ``params``."""
        W = params["w"]
        Ws, vs = self._teacher(W.dtype)
        v = self._v(params, W)
        s2 = jnp.asarray(self.sigma).astype(W.dtype) ** 2
        Fs = relu_gated_moment(W[:, None, :], W[None, :, :])  # (K, K, d)
        Ft = relu_gated_moment(W[:, None, :], Ws[None, :, :])  # (K, K*, d)
        gW = s2 * v[:, None] * (jnp.einsum("k,jkd->jd", v, Fs) - jnp.einsum("k,jkd->jd", vs, Ft))
        out = {"w": gW}
        if "v" in params:
            Kss = relu_kernel(W[:, None, :], W[None, :, :])
            Kst = relu_kernel(W[:, None, :], Ws[None, :, :])
            out["v"] = s2 * (Kss @ v - Kst @ vs)
        return out

    def predict(self, params, X):
        """``f(X)`` for inputs ``X`` of shape (N, d): shape (N,)."""
        W = params["w"]
        return jax.nn.relu(X @ W.T) @ self._v(params, W)

    def teacher_predict(self, X):
        Ws, vs = self._teacher(X.dtype)
        return jax.nn.relu(X @ Ws.T) @ vs

    def sample_inputs(self, key, N, dtype=None):
        """``N`` inputs ``x ~ N(0, sigma^2 I)``: shape (N, d)."""
        Ws = jnp.asarray(self.teacher_w)
        dtype = dtype or Ws.dtype
        return jnp.asarray(self.sigma).astype(dtype) * jax.random.normal(key, (N, Ws.shape[-1]), dtype)

    # metrics --------------------------------------------------------------
    def _matching(self, params):
        """``(teacher_dist, angle)`` under the best matching of units (K = K* only)."""
        W = params["w"]
        Ws, vs = self._teacher(W.dtype)
        K, Kt = W.shape[0], Ws.shape[0]
        if K != Kt or K > _MAX_PERM_K:
            nan = jnp.full((), jnp.nan, W.dtype)
            return nan, nan
        U = self._v(params, W)[:, None] * W
        Us = vs[:, None] * Ws
        perms = np.asarray(list(itertools.permutations(range(K))))  # (P, K)
        # squared distances of every student row to every teacher row, then per matching
        D = jnp.sum((U[:, None, :] - Us[None, :, :]) ** 2, axis=-1)  # (K, K*)
        A = relu_angle(W[:, None, :], Ws[None, :, :])  # (K, K*)
        rows = np.arange(K)[None, :]
        tot = jnp.sum(D[rows, perms], axis=1)  # (P,)
        best = jnp.argmin(tot)
        ang = jnp.max(A[rows, perms], axis=1)[best]
        scale = jnp.sqrt(jnp.sum(Us * Us))
        return jnp.sqrt(tot[best]) / scale, ang

    def metrics(self, params, grad):
        """Recorded metrics (:attr:`metric_names`), each a scalar.

        ``teacher_dist``: ``min_P |U - P U*|_F / |U*|_F`` over matchings ``P`` of
        units, rows ``U_j = v_j w_j`` (the function determines them for
        distinct teacher directions); ``angle``: the largest angle between a
        student unit and its matched teacher unit. Both NaN unless
        ``K = K* <= 7``. ``w_norm_min/max``: smallest/largest ``|w_j|``.
        """
        L = self.loss(params)
        dist, ang = self._matching(params)
        nrm = nm.safe_norm(params["w"])
        return dict(
            loss=L, rel_loss=L / self.zero_loss(L.dtype), teacher_dist=dist, grad_norm=_grad_norm(grad),
            angle=ang, w_norm_min=jnp.min(nrm), w_norm_max=jnp.max(nrm),
        )

    def norms(self, params):
        """``(lo, hi)``: smallest unit norm, and largest of unit norms and ``|v|``."""
        nrm = nm.safe_norm(params["w"])
        hi = jnp.max(nrm)
        if "v" in params:
            hi = jnp.maximum(hi, nm.safe_norm(params["v"]))
        return jnp.min(nrm), hi


_register(ReLUNetwork, ("teacher_w", "teacher_v", "sigma"))


# ---------------------------------------------------------------------------
# One-hidden-layer CNN with a ReLU student


@dataclasses.dataclass(frozen=True)
class ReLUCNN(Model):
    """The CNN ``y = v^T relu(Z w)`` with a ReLU student and a ReLU teacher.

    ``Z`` is ``m x n`` with i.i.d. ``N(0, sigma^2)`` entries, so its rows are
    independent: same-row moments are ``A(a, b) = sigma^2 kappa(a, b)``
    (:func:`stedyn.relu_kernel`), different-row ones ``B(a, b) = sigma^2 |a||b| / (2 pi)``
    (the product of the means ``sigma |a| / sqrt(2 pi)``), and::

        2L = |v|^2 (A_ww - B_ww) + (1.v)^2 B_ww - 2 (v.v*) (A_w* - B_w*)
             - 2 (1.v)(1.v*) B_w* + |v*|^2 (A_** - B_**) + (1.v*)^2 B_**.

    The ``w`` gradient uses Tian's Theorem 1 for ``dA_w*/dw``.

    Params: ``{"v": (m,), "w": (n,)}``.

    Attributes:
      teacher: :class:`stedyn.Teacher` with ``activation="relu"``.
      sigma: input std, scalar > 0.
    """

    teacher: Any
    sigma: Any = 1.0

    metric_names = ("loss", "rel_loss", "teacher_dist", "grad_norm", "angle", "w_norm", "v_cos")

    def check_params(self, params):
        _params_dict(params, ("v", "w"))
        if not isinstance(self.teacher, Teacher):
            raise ValueError(f"teacher must be an stedyn.Teacher; got {type(self.teacher).__name__}")
        if self.teacher.act.name != "relu":
            raise ValueError(f"ReLUCNN needs teacher activation 'relu'; got {self.teacher.act.name!r}")
        v = _as_float("params['v']", params["v"], 1)
        w = _as_float("params['w']", params["w"], 1)
        tv = _as_float("teacher.v", self.teacher.v, 1)
        tw = _as_float("teacher.w", self.teacher.w, 1)
        if v.shape != tv.shape or w.shape != tw.shape:
            raise ValueError(
                f"params['v'], params['w'] must have the teacher's shapes {tv.shape}, {tw.shape}; got {v.shape}, {w.shape}"
            )
        _sigma_check(self.sigma)
        for name, x in (("params['w']", w), ("teacher.w", tw)):
            c = _concrete(x)
            if c is not None and not np.any(c != 0):
                raise ValueError(f"{name} must be nonzero")
        return params

    def param_event_ndims(self, params):
        return {"v": 1, "w": 1}

    def field_event_ndims(self):
        return dataclasses.replace(self, teacher=Teacher(1, 1, self.teacher.activation), sigma=0)

    def _parts(self, params):
        v, w = params["v"], params["w"]
        dt = w.dtype
        vs, ws = self.teacher.v.astype(dt), self.teacher.w.astype(dt)
        s2 = jnp.asarray(self.sigma).astype(dt) ** 2
        return v, w, vs, ws, s2

    @staticmethod
    def _loss2(v, w, vs, ws, s2):
        nw, ns = nm.safe_norm(w), nm.safe_norm(ws)
        A_ww, A_ss, A_ws = 0.5 * nw * nw, 0.5 * ns * ns, relu_kernel(w, ws)
        B_ww, B_ss, B_ws = nw * nw * INV_2PI, ns * ns * INV_2PI, nw * ns * INV_2PI
        sv, svs = jnp.sum(v), jnp.sum(vs)
        return s2 * (
            jnp.dot(v, v) * (A_ww - B_ww) + sv * sv * B_ww - 2.0 * jnp.dot(v, vs) * (A_ws - B_ws)
            - 2.0 * sv * svs * B_ws + jnp.dot(vs, vs) * (A_ss - B_ss) + svs * svs * B_ss
        )

    def loss(self, params):
        return 0.5 * self._loss2(*self._parts(params))

    def zero_loss(self, dtype=None):
        dt = dtype or jnp.asarray(self.teacher.w).dtype
        vs, ws = self.teacher.v.astype(dt), self.teacher.w.astype(dt)
        s2 = jnp.asarray(self.sigma).astype(dt) ** 2
        ns2 = jnp.dot(ws, ws)
        return 0.5 * s2 * (jnp.dot(vs, vs) * ns2 * (0.5 - INV_2PI) + jnp.sum(vs) ** 2 * ns2 * INV_2PI)

    def grad(self, params):
        v, w, vs, ws, s2 = self._parts(params)
        nw, ns = nm.safe_norm(w), nm.safe_norm(ws)
        wh = nm.safe_normalize(w)
        A_ww, A_ws = 0.5 * nw * nw, relu_kernel(w, ws)
        B_ww, B_ws = nw * nw * INV_2PI, nw * ns * INV_2PI
        sv, svs = jnp.sum(v), jnp.sum(vs)
        one = jnp.ones_like(v)
        gv = s2 * (v * (A_ww - B_ww) + one * (sv * B_ww) - vs * (A_ws - B_ws) - one * (svs * B_ws))
        dA_ws = relu_gated_moment(w, ws)  # Tian Thm 1
        dB_ws = ns * INV_2PI * wh
        vv, vvs = jnp.dot(v, v), jnp.dot(v, vs)
        gw = s2 * (
            0.5 * vv * (w - 2.0 * INV_2PI * w) + sv * sv * INV_2PI * w - vvs * (dA_ws - dB_ws) - sv * svs * dB_ws
        )
        return {"v": gv, "w": gw}

    def predict(self, params, X):
        """``v^T relu(Z w)`` for ``X`` of shape (N, m, n): shape (N,)."""
        return jax.nn.relu(X @ params["w"]) @ params["v"]

    def teacher_predict(self, X):
        return jax.nn.relu(X @ self.teacher.w.astype(X.dtype)) @ self.teacher.v.astype(X.dtype)

    def sample_inputs(self, key, N, dtype=None):
        dt = dtype or jnp.asarray(self.teacher.w).dtype
        shape = (N, jnp.shape(self.teacher.v)[-1], jnp.shape(self.teacher.w)[-1])
        return jnp.asarray(self.sigma).astype(dt) * jax.random.normal(key, shape, dt)

    def metrics(self, params, grad):
        """``teacher_dist = |v w^T - v* w*^T|_F / |v* w*^T|_F`` (zero exactly at
        the global minima, which form the curve ``(c v*, w*/c)``, c > 0)."""
        v, w, vs, ws, _ = self._parts(params)
        L = self.loss(params)
        d2 = jnp.dot(v, v) * jnp.dot(w, w) - 2.0 * jnp.dot(v, vs) * jnp.dot(w, ws) + jnp.dot(vs, vs) * jnp.dot(ws, ws)
        dist = jnp.sqrt(jnp.maximum(d2, 0.0)) / (nm.safe_norm(vs) * nm.safe_norm(ws))
        vn = nm.safe_norm(v) * nm.safe_norm(vs)
        v_cos = jnp.where(vn > 0, jnp.dot(v, vs) / jnp.where(vn > 0, vn, 1.0), 0.0)
        return dict(
            loss=L, rel_loss=L / self.zero_loss(L.dtype), teacher_dist=dist, grad_norm=_grad_norm(grad),
            angle=relu_angle(w, ws), w_norm=nm.safe_norm(w), v_cos=v_cos,
        )

    def norms(self, params):
        nw = nm.safe_norm(params["w"])
        return nw, jnp.maximum(nw, nm.safe_norm(params["v"]))


_register(ReLUCNN, ("teacher", "sigma"))


# ---------------------------------------------------------------------------
# Lee, Sim, Ye: single ReLU neurons, one or several layers


@dataclasses.dataclass(frozen=True)
class ReLUNeuron(Model):
    """The ``depth``-layer single ReLU neuron of Lee, Sim, Ye (Sec. 2, 3.2).

    ``f(x) = v_1 relu(v_2 relu(... relu(v_m relu(w . x))))``, ``m = depth - 1``
    (``depth = 1``: ``f(x) = relu(w . x)``). Since ``relu(w . x) >= 0``,
    ``f(x) = P relu(w . x)`` with ``P = v_1 prod_{k >= 2} relu(v_k)`` (their
    Prop. 3.5), so with Lemma 2.1 and Tian's Theorem 1::

        L = sigma^2 / 2 (P^2 |w|^2 / 2 - 2 P P* kappa(w, w*) + P*^2 |w*|^2 / 2)
        dL/dw = sigma^2 (P^2 w / 2 - P P* F(w, w*))
        dL/dv_k = sigma^2 (P |w|^2 / 2 - P* kappa(w, w*)) dP/dv_k

    (``relu'(0) = 0`` as in the paper). Balanced initialization
    (:meth:`balanced`) sets every ``v_k = |w0|``; the default teacher is
    balanced too, ``v*_k = |w*|``, which is the setting of Prop. 3.6.

    Params: ``{"w": (d,)}`` for depth 1, ``{"w": (d,), "v": (depth - 1,)}`` else.

    Attributes:
      teacher_w: ``w*``, shape (d,), nonzero.
      depth: number of layers ``m + 1 >= 1`` (static).
      teacher_v: ``(v*_1, ..., v*_m)``; ``None`` means balanced, all ``|w*|``.
      sigma: input std, scalar > 0 (the paper: 1).
    """

    teacher_w: Any
    depth: int = 1
    teacher_v: Any = None
    sigma: Any = 1.0

    metric_names = ("loss", "rel_loss", "teacher_dist", "grad_norm", "angle", "w_norm", "v_min", "v_max")

    def __post_init__(self):
        d = self.depth
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"depth must be an int >= 1 (number of layers); got {d!r}")

    @property
    def m(self):
        return int(self.depth) - 1

    def _teacher(self, dtype=None):
        ws = jnp.asarray(self.teacher_w)
        dtype = dtype or ws.dtype
        ws = ws.astype(dtype)
        if self.teacher_v is None:
            vs = jnp.full((self.m,), 1.0, dtype) * nm.safe_norm(ws)
        else:
            vs = jnp.asarray(self.teacher_v).astype(dtype)
        return ws, vs

    def balanced(self, w0):
        """Balanced initialization: ``{"w": w0, "v": [|w0|] * (depth - 1)}``."""
        w0 = jnp.asarray(w0)
        p = {"w": w0}
        if self.m:
            p["v"] = jnp.full(w0.shape[:-1] + (self.m,), 1.0, w0.dtype) * nm.safe_norm(w0)[..., None]
        return p

    def check_params(self, params):
        _params_dict(params, ("w", "v") if self.m else ("w",))
        w = _as_float("params['w']", params["w"], 1)
        ws = _as_float("teacher_w", self.teacher_w, 1)
        if w.shape != ws.shape:
            raise ValueError(f"params['w'] must have teacher_w's shape {ws.shape}; got {w.shape}")
        if self.m:
            v = _as_float("params['v']", params["v"], 1)
            if v.shape != (self.m,):
                raise ValueError(f"params['v'] must have shape (depth - 1,) = ({self.m},); got {v.shape}")
        if self.teacher_v is not None:
            tv = _as_float("teacher_v", self.teacher_v, 1)
            if tv.shape != (self.m,):
                raise ValueError(f"teacher_v must have shape (depth - 1,) = ({self.m},); got {tv.shape}")
        _sigma_check(self.sigma)
        for name, x in (("params['w']", w), ("teacher_w", ws)):
            c = _concrete(x)
            if c is not None and not np.any(c != 0):
                raise ValueError(f"{name} must be nonzero")
        return params

    def param_event_ndims(self, params):
        return {k: 1 for k in params}

    def field_event_ndims(self):
        return dataclasses.replace(self, teacher_w=1, teacher_v=None if self.teacher_v is None else 1, sigma=0)

    @staticmethod
    def _prod(v):
        """``P = v_1 prod_{k>=2} relu(v_k)`` and ``dP/dv`` (empty v: P = 1)."""
        m = v.shape[-1]
        if m == 0:
            return jnp.ones((), v.dtype), v
        r = jnp.concatenate([v[:1], jax.nn.relu(v[1:])])
        dr = jnp.concatenate([jnp.ones_like(v[:1]), (v[1:] > 0).astype(v.dtype)])
        P = jnp.prod(r)
        idx = np.arange(m)
        others = jnp.stack([jnp.prod(jnp.where(idx == k, 1.0, r)) for k in range(m)])
        return P, others * dr

    def _parts(self, params):
        w = params["w"]
        ws, vs = self._teacher(w.dtype)
        v = params["v"] if self.m else jnp.zeros((0,), w.dtype)
        P, dP = self._prod(v)
        Ps, _ = self._prod(vs)
        s2 = jnp.asarray(self.sigma).astype(w.dtype) ** 2
        return w, ws, P, dP, Ps, s2

    def loss(self, params):
        w, ws, P, _, Ps, s2 = self._parts(params)
        return 0.5 * s2 * (0.5 * P * P * jnp.dot(w, w) - 2.0 * P * Ps * relu_kernel(w, ws) + 0.5 * Ps * Ps * jnp.dot(ws, ws))

    def zero_loss(self, dtype=None):
        ws, vs = self._teacher(dtype)
        Ps, _ = self._prod(vs)
        return 0.25 * jnp.asarray(self.sigma).astype(ws.dtype) ** 2 * Ps * Ps * jnp.dot(ws, ws)

    def grad(self, params):
        w, ws, P, dP, Ps, s2 = self._parts(params)
        gw = s2 * (0.5 * P * P * w - P * Ps * relu_gated_moment(w, ws))
        out = {"w": gw}
        if self.m:
            out["v"] = s2 * (0.5 * P * jnp.dot(w, w) - Ps * relu_kernel(w, ws)) * dP
        return out

    def predict(self, params, X):
        """``f(X)`` for ``X`` (N, d), layer by layer as the paper writes it: (N,)."""
        h = jax.nn.relu(X @ params["w"])
        if self.m:
            v = params["v"]
            for k in range(self.m - 1, 0, -1):
                h = jax.nn.relu(v[k] * h)
            h = v[0] * h
        return h

    def teacher_predict(self, X):
        ws, vs = self._teacher(X.dtype)
        return self.predict({"w": ws, "v": vs} if self.m else {"w": ws}, X)

    def sample_inputs(self, key, N, dtype=None):
        ws = jnp.asarray(self.teacher_w)
        dt = dtype or ws.dtype
        return jnp.asarray(self.sigma).astype(dt) * jax.random.normal(key, (N, ws.shape[-1]), dt)

    def metrics(self, params, grad):
        """``teacher_dist = |P w - P* w*| / |P* w*|`` (the function is
        ``relu(P w . x)`` for ``P > 0``); ``angle`` is the paper's ``theta``
        (its ``varphi = pi - theta``); ``v_min/v_max`` over the ``v_k`` (1 for
        depth 1: the empty product)."""
        w, ws, P, _, Ps, _ = self._parts(params)
        L = self.loss(params)
        dist = nm.safe_norm(P * w - Ps * ws) / (jnp.abs(Ps) * nm.safe_norm(ws))
        if self.m:
            vmin, vmax = jnp.min(params["v"]), jnp.max(params["v"])
        else:
            vmin = vmax = jnp.ones((), w.dtype)
        return dict(
            loss=L, rel_loss=L / self.zero_loss(L.dtype), teacher_dist=dist, grad_norm=_grad_norm(grad),
            angle=relu_angle(w, ws), w_norm=nm.safe_norm(w), v_min=vmin, v_max=vmax,
        )

    def norms(self, params):
        nw = nm.safe_norm(params["w"])
        hi = nw
        if self.m:
            hi = jnp.maximum(hi, jnp.max(jnp.abs(params["v"])))
        return nw, hi


_register(ReLUNeuron, ("teacher_w", "teacher_v", "sigma"), ("depth",))


MODELS = (ReLUNetwork, ReLUCNN, ReLUNeuron)
