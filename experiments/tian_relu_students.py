"""Tian (2017): how often do K = 1 and K = 2 ReLU students reach a ReLU teacher?

Model (Tian's eq. 68): f(x) = sum_j relu(w_j . x), x ~ N(0, I_d), teacher of
the same form; population gradient descent on the exact loss
(``sd.ReLUNetwork``; Tian's Theorem 1 gives the gradient), eta = lr.

The supplement's claims (paper 003):

* Thm. 5 (K = 1): from |w0 - w*| < |w*| the dynamics converges to w*.
* Thm. 6 (K = 1): for w0 uniform in the ball of radius r <= eps sqrt(2 pi / (d + 1)) |w*|
  it converges with probability at least (1 - eps) / 2.
* Thm. 7 (K teachers orthonormal): from the symmetric start w_j = x0 e_j + y0
  sum_{k != j} e_k with x0 > y0 it converges to the teacher; with x0 = y0 to
  the saddle x = y = x* = (sqrt(K - 1) - arccos(1/sqrt K) + pi) / (pi K).

The supplement proves nothing about random initialization for K = 2; we
measure it (Gaussian w0 ~ N(0, I/d)) for orthonormal teachers and for
teachers at other angles, in d = 2 and the chosen d. Also measured: the
one-hidden-layer CNN y = v^T relu(Z w) with a ReLU student and trained v
(``sd.ReLUCNN``), from random starts.

Outcomes are sd.run's labels (default sd.Tolerances): ``global_min`` is the
teacher (relative distance < 1e-2, stationary); ``unbounded`` for K = 1 at
theta0 = pi is the collapse w -> 0 of Tian's eq. 48.

Outputs in --out: ``outcomes.png``, ``ball_radius.png``, ``symmetric_K2.png``,
``loss_curves.png``, ``summary.md``.
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import stedyn as sd  # noqa: E402
from _common import plt  # noqa: E402

NAME = "tian_relu_students"
RADII = (0.1, 0.3, 1.0, 3.0)  # ball radius / |w*| (Thm. 6)
ALPHAS = (math.pi / 6, math.pi / 2, 5 * math.pi / 6)  # angle between the two teacher units


def x_star(K):
    """Tian Thm. 7 (2) / Lemma 9: the symmetric saddle."""
    return (math.sqrt(K - 1) - math.acos(1 / math.sqrt(K)) + math.pi) / (math.pi * K)


def ball_uniform(rng, B, d, r):
    """B points uniform in the d-ball of radius r."""
    u = C.unit(rng, (B, d))
    return u * (r * rng.uniform(size=(B, 1)) ** (1.0 / d))


def _run(model, W0, lr, steps):
    return sd.run(model, {"w": jnp.asarray(W0)}, lr=lr, steps=steps)


def main(argv=None):
    p = C.parser(NAME, __doc__)
    p.add_argument("--d", type=int, default=10, help="input dimension (default 10)")
    p.add_argument("--inits", type=int, default=None, help="random starts per setting (default 200; quick 12)")
    p.add_argument("--steps", type=int, default=None, help="gradient-descent steps (default 5000; quick 1500)")
    p.add_argument("--lr", type=float, default=1.0, help="learning rate (default 1.0)")
    args = p.parse_args(argv)
    C.setup()
    clock = C.Timer()
    quick = args.quick
    B = args.inits or (12 if quick else 200)
    steps = args.steps or (1500 if quick else 5000)
    d, lr = args.d, args.lr
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    res = {"d": d, "inits": B, "steps": steps, "lr": lr}
    settings = {}  # name -> outcome names
    curves = {}

    # --- A. K = 1: every start in one batch -------------------------------------------
    ws = np.eye(d)[:1]
    M1 = sd.ReLUNetwork(jnp.asarray(ws))
    c6 = math.sqrt(2 * math.pi / (d + 1))
    parts = {
        "gauss": rng.normal(size=(B, 1, d)) / math.sqrt(d),
        "thm5": ws[None] + ball_uniform(rng, B, d, 0.999)[:, None, :],  # |w0 - w*| < |w*|
        **{f"ball{i}": ball_uniform(rng, B, d, r)[:, None, :] for i, r in enumerate(RADII)},
        "pi": -0.7 * ws[None],  # theta0 = pi exactly
    }
    R = _run(M1, np.concatenate(list(parts.values())), lr, steps)
    o1, off = {}, 0
    for k, x in parts.items():
        o1[k] = np.asarray(R.outcome)[off:off + len(x)]
        off += len(x)
    settings["K=1, Gaussian w0"] = o1["gauss"]
    curves["K=1, Gaussian w0"] = np.asarray(R.trajectory["rel_loss"])[:B]
    steps_rec = R.steps
    res["thm5"] = dict(n=B, reached=int(np.sum(o1["thm5"] == "global_min")))
    ball = []
    for i, r in enumerate(RADII):
        eps = r / c6
        ob = o1[f"ball{i}"]
        ball.append(dict(r=r, frac=C.frac(ob == "global_min"), eps=eps,
                         claim=(1 - eps) / 2 if eps < 1 else float("nan"), counts=C.counts(ob)))
    res["thm6"] = ball
    res["theta_pi"] = dict(outcome=str(o1["pi"][0]), stop=int(R.stop_step[-1]), w_norm=float(R.final["w_norm_min"][-1]))

    # --- B. K = 2: random starts, the teachers of one d batched together ----------------
    teachers = {f"K=2, orthonormal teacher, d={d}": np.eye(d)[:2]}
    for a in ALPHAS:
        Ws = np.zeros((2, d))
        Ws[0, 0] = 1.0
        Ws[1, 0], Ws[1, 1] = math.cos(a), math.sin(a)
        teachers[f"K=2, teacher angle {math.degrees(a):.0f} deg, d={d}"] = Ws
    nt = len(teachers)
    Wt = np.repeat(np.stack(list(teachers.values())), B, axis=0)
    W0 = rng.normal(size=(nt * B, 2, d)) / math.sqrt(d)
    R2 = _run(sd.ReLUNetwork(jnp.asarray(Wt)), W0, lr, steps)
    for i, name in enumerate(teachers):
        settings[name] = np.asarray(R2.outcome)[i * B:(i + 1) * B]
    curves[f"K=2, orthonormal teacher, d={d}"] = np.asarray(R2.trajectory["rel_loss"])[:B]
    if d != 2 and not quick:
        W0 = rng.normal(size=(B, 2, 2)) / math.sqrt(2)
        R2 = _run(sd.ReLUNetwork(jnp.asarray(np.eye(2))), W0, lr, steps)
        settings["K=2, orthonormal teacher, d=2"] = np.asarray(R2.outcome)
        curves["K=2, orthonormal teacher, d=2"] = np.asarray(R2.trajectory["rel_loss"])
    # Thm. 7: symmetric starts, trajectories by chunks continuing each other
    M2 = sd.ReLUNetwork(jnp.asarray(np.eye(2)))
    grid = [(x, y) for x in (0.1, 0.4, 0.8, 1.2) for y in (0.0, 0.05, 0.3, 0.6, 1.0) if x > y]
    diag = [(x, x) for x in (0.05, 0.2, 0.5, 0.9)]
    starts = grid + diag
    W = np.array([[[x, y], [y, x]] for x, y in starts], dtype=np.float64)
    chunk, nchunks = max(1, steps // 50), 50
    path = [W[:, 0, :].copy()]
    Wc = jnp.asarray(W)
    for _ in range(nchunks):
        Rc = sd.run(M2, {"w": Wc}, lr=lr, steps=chunk, record_every=chunk)
        Wc = Rc.params["w"]
        path.append(np.asarray(Wc)[:, 0, :])
    path = np.stack(path, axis=1)  # (S, T, 2): unit 1's (x, y)
    Rs = sd.run(M2, {"w": jnp.asarray(W)}, lr=lr, steps=chunk * nchunks)
    o7 = np.asarray(Rs.outcome)
    Wf = np.asarray(Rs.params["w"])
    ng = len(grid)
    xs2 = x_star(2)
    hess = np.asarray(jax.jit(jax.vmap(lambda w: M2.hessian_min_ratio({"w": w})))(jnp.asarray(Wf[ng:])))
    res["thm7"] = dict(
        n_grid=ng, grid_reached=int(np.sum(o7[:ng] == "global_min")), grid_counts=C.counts(o7[:ng]),
        n_diag=len(diag), diag_counts=C.counts(o7[ng:]), x_star=xs2,
        diag_final_x=Wf[ng:, 0, 0].tolist(), diag_final_y=Wf[ng:, 0, 1].tolist(),
        diag_max_err=float(np.max(np.abs(Wf[ng:, 0, :] - xs2))), diag_hessian=float(np.max(hess)),
    )

    # --- C. CNN with a ReLU student (both teachers in one batch) ---------------------
    m, n, nT = 5, d, 2
    tv = rng.normal(size=(nT, m))
    tw = C.unit(rng, (nT, n))
    T = sd.Teacher(jnp.asarray(np.repeat(tv, B, axis=0)), jnp.asarray(np.repeat(tw, B, axis=0)), "relu")
    V0 = rng.normal(size=(nT * B, m)) / math.sqrt(m)
    W0 = rng.normal(size=(nT * B, n)) / math.sqrt(n)
    Rc = sd.run(sd.ReLUCNN(T), {"v": jnp.asarray(V0), "w": jnp.asarray(W0)}, lr=0.2, steps=steps)
    cnn = []
    for t in range(nT):
        sl = slice(t * B, (t + 1) * B)
        o = np.asarray(Rc.outcome)[sl]
        settings[f"CNN relu student, teacher {t}, m={m}, n={n}"] = o
        sp = o == "spurious_min"
        cnn.append(dict(counts=C.counts(o),
                        spurious_rel_loss=float(np.median(np.asarray(Rc.final["rel_loss"])[sl][sp])) if sp.any() else float("nan"),
                        spurious_angle=float(np.median(np.asarray(Rc.final["angle"])[sl][sp])) if sp.any() else float("nan")))
    res["cnn"] = cnn
    res["settings"] = {k: C.counts(v) for k, v in settings.items()}
    res["t_sim"] = clock()

    figures = _figures(out, res, settings, curves, steps_rec, path, starts, ng)
    res["figures"] = figures
    res["summary"] = C.write_summary(out, _summary(res))
    res["runs_data"] = dict(path=path, starts=starts, final_w=Wf, outcomes7=o7)
    return res


def _figures(out, res, settings, curves, steps_rec, path, starts, ng):
    figs = {}
    names = list(settings)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
    left = np.zeros(len(names))
    for k, col in zip(sd.OUTCOMES, C.OUTCOME_COLORS):
        f = np.array([np.mean(settings[nm] == k) for nm in names])
        ax.barh(range(len(names)), f, left=left, color=col, label=k, edgecolor="white", linewidth=0.5)
        left += f
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("fraction of random starts")
    ax.set_xlim(0, 1)
    ax.legend(ncol=3, fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    figs["outcomes"] = C.save(fig, out, "outcomes.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    b = res["thm6"]
    r = [x["r"] for x in b]
    ax.plot(r, [x["frac"] for x in b], "o-", label="measured: reach w*")
    rr = np.linspace(1e-3, math.sqrt(2 * math.pi / (res["d"] + 1)), 50)
    ax.plot(rr, (1 - rr / math.sqrt(2 * math.pi / (res["d"] + 1))) / 2, "--", label="Thm. 6 guarantee (1 - eps)/2")
    ax.set_xscale("log")
    ax.set_xlabel("ball radius r / |w*|")
    ax.set_ylabel("fraction")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(f"K = 1, w0 uniform in a ball, d = {res['d']}", fontsize=10)
    ax.legend(fontsize=8)
    figs["ball_radius"] = C.save(fig, out, "ball_radius.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for s in range(path.shape[0]):
        col = "#2ca02c" if s < ng else "#ff7f0e"
        ax.plot(path[s, :, 0], path[s, :, 1], "-", color=col, lw=1)
        ax.plot(*path[s, 0], "o", color=col, ms=3)
    xs2 = res["thm7"]["x_star"]
    ax.plot([1], [0], "k*", ms=12, label="teacher (1, 0)")
    ax.plot([xs2], [xs2], "kX", ms=9, label=f"saddle x* = {xs2:.4f}")
    ax.plot([0, 1.3], [0, 1.3], ":", color="grey", lw=0.8)
    ax.set_xlabel("x (w_1 . e_1)")
    ax.set_ylabel("y (w_1 . e_2)")
    ax.set_title("K = 2, Thm. 7 symmetric starts: green x0 > y0, orange x0 = y0", fontsize=9)
    ax.legend(fontsize=8)
    figs["symmetric_K2"] = C.save(fig, out, "symmetric_K2.png")

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (name, L), col in zip(curves.items(), ("C0", "C1", "C2", "C3")):
        for k in range(min(8, L.shape[0])):
            ax.plot(steps_rec, np.maximum(L[k], 1e-30), color=col, lw=0.8, label=name if k == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss / loss at w = 0")
    ax.legend(fontsize=7)
    figs["loss_curves"] = C.save(fig, out, "loss_curves.png")
    return figs


def _summary(res):
    d, B = res["d"], res["inits"]
    L = [f"# {NAME}", "",
         f"Tian (2017), two-layer ReLU network sum_j relu(w_j . x) on x ~ N(0, I_d), population gradient descent "
         f"(exact loss, sd.ReLUNetwork), lr = {res['lr']}, {res['steps']} steps, d = {d}, {B} random starts per "
         f"setting, float64. Outcomes are sd.run's labels (default sd.Tolerances). Simulation {res['t_sim']:.0f} s.",
         "", "## Measured", ""]
    L += ["| setting | outcomes |", "|---|---|"]
    for k, c in res["settings"].items():
        L.append(f"| {k} | {C.fmt_counts(c)} |")
    t5 = res["thm5"]
    L += ["", f"K = 1, starts uniform in Thm. 5's region |w0 - w*| < |w*|: {t5['reached']} of {t5['n']} reach w*.", "",
          "K = 1, w0 uniform in a ball of radius r (Thm. 6 guarantees (1 - eps)/2 for eps = r / (sqrt(2 pi/(d+1)) |w*|) <= 1):", "",
          "| r / |w*| | eps | guaranteed | measured reach w* | outcomes |", "|---|---|---|---|---|"]
    for b in res["thm6"]:
        L.append(f"| {b['r']:g} | {b['eps']:.3g} | {C.pct(b['claim'])} | {C.pct(b['frac'])} | {C.fmt_counts(b['counts'])} |")
    tp = res["theta_pi"]
    L += ["", f"K = 1 from w0 = -0.7 w* (theta0 = pi exactly): {tp['outcome']} (|w| fell below 1e-8 |w0| at step "
          f"{tp['stop']}; Tian's eq. 48 is w/2 there)."]
    t7 = res["thm7"]
    L += ["", f"K = 2, orthonormal teacher, Thm. 7 symmetric starts w_1 = (x0, y0), w_2 = (y0, x0): "
          f"x0 > y0: {C.fmt_counts(t7['grid_counts'])}; x0 = y0: {C.fmt_counts(t7['diag_counts'])}, final "
          f"(x, y) within {t7['diag_max_err']:.1e} of (x*, x*), x* = {t7['x_star']:.6f} from Lemma 9's formula; "
          f"the loss Hessian there has lambda_min / max|lambda| <= {t7['diag_hessian']:.3f} (a saddle)."]
    for i, c in enumerate(res["cnn"]):
        txt = f"CNN y = v^T relu(Z w), teacher {i}: {C.fmt_counts(c['counts'])}"
        if c["spurious_rel_loss"] == c["spurious_rel_loss"]:
            txt += (f"; the spurious minima have median loss {C.num(c['spurious_rel_loss'])} of the zero network's "
                    f"and angle {C.num(c['spurious_angle'])} rad to w*")
        L.append(txt + ".")
    L += ["", "## Compared with the paper", ""]
    k1 = res["settings"]["K=1, Gaussian w0"]
    L.append(f"* Thm. 5 (K = 1, |w0 - w*| < |w*|): {t5['reached']}/{t5['n']} converge: "
             + ("agrees." if t5["reached"] == t5["n"] else "disagrees."))
    worst = min(b["frac"] for b in res["thm6"])
    ok6 = all(not (b["claim"] == b["claim"]) or b["frac"] >= b["claim"] for b in res["thm6"])
    L.append(f"* Thm. 6 (K = 1, ball starts): every radius reaches w* in at least {worst:.1%} of the starts, "
             f"above the guaranteed (1 - eps)/2 wherever it applies ({'agrees' if ok6 else 'DISAGREES'}); the bound is "
             f"very conservative: from Gaussian starts {k1['global_min']}/{sum(k1.values())} reach w*. The "
             f"only failure of K = 1 we know is theta0 = pi exactly (measured: {tp['outcome']}), as Lee, Sim, Ye's "
             f"Thm. 3.2 says (convergence for every phi0 in (0, pi)).")
    L.append(f"* Thm. 7 (K = 2, orthonormal teacher): symmetric starts with x0 > y0 reach the teacher in "
             f"{t7['grid_reached']}/{t7['n_grid']}; with x0 = y0 all end at x = y = x* to {t7['diag_max_err']:.0e}: "
             + ("agrees." if t7["grid_reached"] == t7["n_grid"] and t7["diag_max_err"] < 1e-6 else "partly disagrees."))
    rnd = {k: v for k, v in res["settings"].items() if k.startswith("K=2,")}
    txt = "; ".join(f"{k.split(', ', 1)[1]}: {v['global_min']}/{sum(v.values())}" for k, v in rnd.items())
    L.append(f"* K = 2 from random Gaussian starts (no claim in the supplement; its Conj. 1 / Thm. 4 rule out "
             f"critical points with both units inside or both outside the teacher cone): reach the teacher in {txt}.")
    L.append("* CNN with a ReLU student and trained v (not in Tian's supplement): a sizable share of random starts "
             "ends at a spurious local minimum (stationary, positive semi-definite Hessian), measured above.")
    L += ["", "Figures: `outcomes.png`, `ball_radius.png`, `symmetric_K2.png`, `loss_curves.png`."]
    return L


if __name__ == "__main__":
    r = main()
    print(open(r["summary"]).read())
