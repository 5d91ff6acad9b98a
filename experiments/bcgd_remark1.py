"""BCGD (Yin et al.) eq. 20 and Remark 1: normalized coarse gradient descent reaches the global minimizer.

Claim (Remark 1 after Theorem 1 of the blended-coarse-gradient-descent paper):
for the binary teacher on unit Gaussian input, |w*| = 1, the normalized
coarse gradient descent of eq. 20 with the ReLU STE (v step; w step; w <- w/|w|)
converges to the global minimizer (v*, w*) when the initialization satisfies

  (a) v0 . v* > 0,   (b) theta(w0, w*) <= pi/2,   (c) (1'v*)(1'v0) <= (1'v*)^2.

What this script does: draws random binary teachers (|w*| = 1; v* = g + c 1,
g ~ N(0, I), c ~ U(-1, 1), so some have the spurious minimum and some not)
normalized to |v*| = 1, and random initializations (v0 ~ N(0, I/m), w0 uniform on the unit
sphere), runs eq. 20 (``rule="normalized"``, ReLU STE) on all of them at two
step sizes, and measures the fraction that sd.run labels ``global_min`` (also
checking |v - v*| and the angle) among the draws meeting (a)-(c), and, for
contrast, among draws failing exactly one condition. The same draws are also
run with plain coarse gradient descent (``rule="coarse"``, Algorithm 1).

Outputs in --out: ``fractions.png``, ``initializations.png``,
``trajectories.png``, ``summary.md``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import stedyn as sd  # noqa: E402
from _common import plt  # noqa: E402

NAME = "bcgd_remark1"
ETAS = (0.1, 0.5)
GROUPS = ("all met", "only (a) fails", "only (b) fails", "only (c) fails", "two or more fail")


def _conditions(v0, w0, vs, ws):
    """Remark 1's conditions (a), (b), (c) per draw, as booleans."""
    a = np.sum(v0 * vs, axis=1) > 0
    b = C.angle_between(w0, ws) <= np.pi / 2
    S = vs.sum(axis=1)
    c = S * v0.sum(axis=1) <= S**2
    return a, b, c


def _group(a, b, c):
    fails = (~a).astype(int) + (~b).astype(int) + (~c).astype(int)
    g = np.full(a.shape, 4)
    g[fails == 0] = 0
    g[(fails == 1) & ~a] = 1
    g[(fails == 1) & ~b] = 2
    g[(fails == 1) & ~c] = 3
    return g


def main(argv=None):
    p = C.parser(NAME, __doc__)
    p.add_argument("--teachers", type=int, default=None, help="random teachers (default 64; quick 4)")
    p.add_argument("--inits", type=int, default=None, help="random initializations per teacher (default 32; quick 6)")
    p.add_argument("--steps", type=int, default=None, help="steps (default 3000; quick 2000)")
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--n", type=int, default=8)
    args = p.parse_args(argv)
    C.setup()
    clock = C.Timer()
    quick = args.quick
    K = args.teachers or (4 if quick else 64)
    J = args.inits or (6 if quick else 32)
    steps = args.steps or (2000 if quick else 3000)
    m, n = args.m, args.n
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    vs_k = rng.normal(size=(K, m)) + rng.uniform(-1.0, 1.0, size=(K, 1))
    vs_k /= np.linalg.norm(vs_k, axis=1, keepdims=True)  # one time scale for all teachers
    ws_k = C.unit(rng, (K, n))
    t_of = np.repeat(np.arange(K), J)
    vs, ws = vs_k[t_of], ws_k[t_of]
    N = K * J
    v0 = rng.normal(size=(N, m)) / np.sqrt(m)
    w0 = C.unit(rng, (N, n))
    a, b, c = _conditions(v0, w0, vs, ws)
    grp = _group(a, b, c)
    spur_k = np.asarray(jax.vmap(lambda x, y: sd.saddle_exists(sd.Teacher(x, y, "binary")))(
        jnp.asarray(vs_k), jnp.asarray(ws_k)))
    spur = spur_k[t_of]

    E = len(ETAS)
    T = sd.Teacher(jnp.asarray(np.tile(vs, (E, 1))), jnp.asarray(np.tile(ws, (E, 1))), "binary")
    eta = jnp.asarray(np.repeat(np.asarray(ETAS), N))
    runs = {}
    runs["normalized"] = sd.run(jnp.asarray(np.tile(v0, (E, 1))), jnp.asarray(np.tile(w0, (E, 1))), T,
                                sd.Gaussian(1.0), ste="relu", rule="normalized", lr=eta, steps=steps)
    T1 = sd.Teacher(jnp.asarray(vs), jnp.asarray(ws), "binary")
    runs["coarse"] = sd.run(jnp.asarray(v0), jnp.asarray(w0), T1, sd.Gaussian(1.0), ste="relu", rule="coarse",
                            lr=ETAS[0], steps=steps)
    t_sim = clock()

    # --- measurements --------------------------------------------------------------
    def measure(R, k):
        sl = slice(k * N, (k + 1) * N)
        o = np.asarray(R.outcome)[sl]
        v = np.asarray(R.v)[sl]
        return dict(outcome=o, code=np.asarray(R.outcome_code)[sl], angle=np.asarray(R.final["angle"])[sl],
                    v_err=np.linalg.norm(v - vs, axis=1) / np.linalg.norm(vs, axis=1),
                    w_norm=np.asarray(R.final["w_norm"])[sl])

    meas = {("normalized", e): measure(runs["normalized"], i) for i, e in enumerate(ETAS)}
    meas[("coarse", ETAS[0])] = measure(runs["coarse"], 0)
    result = {"draws": N, "teachers": K, "inits": J, "steps": steps, "etas": ETAS,
              "group_sizes": {g: int(np.sum(grp == i)) for i, g in enumerate(GROUPS)},
              "spurious_teachers": int(spur_k.sum())}
    table = {}
    for key, M in meas.items():
        glob = M["outcome"] == "global_min"
        row = {}
        for i, g in enumerate(GROUPS):
            s = grp == i
            row[g] = dict(n=int(s.sum()), frac=C.frac(glob[s]), counts=C.counts(M["outcome"][s]))
        s0 = grp == 0
        row["all met, spurious teacher"] = dict(n=int(np.sum(s0 & spur)), frac=C.frac(glob[s0 & spur]))
        row["all met, no spurious"] = dict(n=int(np.sum(s0 & ~spur)), frac=C.frac(glob[s0 & ~spur]))
        row["all draws"] = dict(n=N, frac=C.frac(glob), counts=C.counts(M["outcome"]))
        row["max_v_err_global"] = float(np.max(M["v_err"][glob])) if glob.any() else float("nan")
        row["max_angle_global"] = float(np.max(M["angle"][glob])) if glob.any() else float("nan")
        row["failures_met"] = C.counts(M["outcome"][s0 & ~glob])
        row["failures_met_angles"] = np.round(np.sort(M["angle"][s0 & ~glob]), 3).tolist()
        table[f"{key[0]} eta={key[1]}"] = row
    result["table"] = table
    key0 = f"normalized eta={ETAS[0]}"
    result["remark1_frac"] = table[key0]["all met"]["frac"]
    result["remark1_n"] = table[key0]["all met"]["n"]

    figs = {}
    figs["fractions"] = _fig_fractions(out, table)
    figs["initializations"] = _fig_inits(out, meas[("normalized", ETAS[0])], v0, w0, vs, ws, c, steps)
    figs["trajectories"] = _fig_traj(out, runs["normalized"], grp, N)
    result["figures"] = figs
    result["seconds"] = clock()
    result["runs_data"] = dict(meas=meas, grp=grp, conditions=(a, b, c), vs=vs, ws=ws, v0=v0, w0=w0, runs=runs)
    C.write_summary(out, _summary(result, m, n, t_sim))
    result["summary"] = str(out / "summary.md")
    return result


def _fig_fractions(out, table):
    fig, ax = plt.subplots(figsize=(11, 4.3))
    keys = list(table)
    x = np.arange(len(GROUPS))
    w = 0.8 / len(keys)
    for i, k in enumerate(keys):
        vals = [table[k][g]["frac"] for g in GROUPS]
        bars = ax.bar(x + (i - (len(keys) - 1) / 2) * w, np.nan_to_num(vals), w, label=k)
        for bar, g in zip(bars, GROUPS):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"n={table[k][g]['n']}",
                    ha="center", fontsize=6, rotation=90)
    ax.set_xticks(x, GROUPS)
    ax.set_ylabel("fraction labeled global_min")
    ax.set_ylim(0, 1.2)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Remark 1 conditions (a) v0.v* > 0, (b) theta0 <= pi/2, (c) (1'v*)(1'v0) <= (1'v*)^2", fontsize=10)
    fig.tight_layout()
    return str(C.save(fig, out, "fractions.png"))


def _fig_inits(out, M, v0, w0, vs, ws, c, steps):
    th = C.angle_between(w0, ws)
    cv = np.sum(v0 * vs, 1) / (np.linalg.norm(v0, axis=1) * np.linalg.norm(vs, axis=1))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, sel, title in ((axes[0], c, "(c) holds"), (axes[1], ~c, "(c) fails")):
        for k, col in zip(sd.OUTCOMES, C.OUTCOME_COLORS):
            s = sel & (M["outcome"] == k)
            if s.any():
                ax.plot(th[s], cv[s], "o", ms=3, color=col, label=f"{k} ({int(s.sum())})",
                        mec="k" if k == "not_converged" else col, mew=0.3)
        ax.axvline(np.pi / 2, color="k", lw=0.8, ls="--")
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set_xlabel("initial angle theta(w0, w*) [rad]")
        ax.set_title(f"{title}; Remark 1 region: left of pi/2 and above 0", fontsize=10)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("cos(v0, v*)")
    fig.suptitle(f"normalized coarse GD (eq. 20), ReLU STE, eta = {ETAS[0]}, {steps} steps: sd.run outcome per draw",
                 fontsize=10)
    fig.tight_layout()
    return str(C.save(fig, out, "initializations.png"))


def _fig_traj(out, R, grp, N):
    t = R.steps
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for i, col in ((0, "C2"), (2, "C1")):
        idx = np.where(grp == i)[0][:10]
        for j, k in enumerate(idx):
            lab = GROUPS[i] if j == 0 else None
            axes[0].plot(t, np.asarray(R.trajectory["angle"])[k], color=col, lw=0.7, label=lab)
            axes[1].semilogy(t, np.maximum(np.asarray(R.trajectory["loss"])[k], 1e-17), color=col, lw=0.7, label=lab)
    axes[0].set_ylabel("angle(w, w*) [rad]")
    axes[1].set_ylabel("population loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.suptitle(f"eq. 20, eta = {ETAS[0]}: ten draws meeting (a)-(c) and ten failing only (b)", fontsize=10)
    fig.tight_layout()
    return str(C.save(fig, out, "trajectories.png"))


def _summary(res, m, n, t_sim):
    K, J, N, steps = res["teachers"], res["inits"], res["draws"], res["steps"]
    L = ["# BCGD eq. 20 / Remark 1: normalized coarse gradient descent, binary teacher", ""]
    L.append(
        f"Setup: m = {m}, n = {n}, unit Gaussian input. {K} random binary teachers (|w*| = 1, v* = g + c 1 "
        f"normalized to |v*| = 1, g ~ N(0, I), c ~ U(-1, 1); {res['spurious_teachers']} of them have the spurious "
        f"minimum) x {J} random initializations (v0 ~ N(0, I/m), w0 uniform on the unit sphere) = {N} draws. Eq. 20 "
        f"(`rule=\"normalized\"`, ReLU STE) at eta in {list(ETAS)} and, for comparison, Algorithm 1 "
        f"(`rule=\"coarse\"`) at eta = {ETAS[0]}; {steps} steps. {t_sim:.0f} s of simulation, "
        f"{res['seconds']:.0f} s in all. 'global_min' is sd.run's label (default sd.Tolerances)."
    )
    L += ["", "## Measured", "", "Draws per group: " + ", ".join(f"{g} {k}" for g, k in res["group_sizes"].items()) + ".", ""]
    L.append("| run | " + " | ".join(GROUPS) + " | all met, teacher with spurious min | all met, without |")
    L.append("|---" * (len(GROUPS) + 3) + "|")
    for key, row in res["table"].items():
        L.append(f"| {key} | " + " | ".join(f"{C.pct(row[g]['frac'])} (n={row[g]['n']})" for g in GROUPS)
                 + f" | {C.pct(row['all met, spurious teacher']['frac'])} (n={row['all met, spurious teacher']['n']})"
                 + f" | {C.pct(row['all met, no spurious']['frac'])} (n={row['all met, no spurious']['n']}) |")
    L.append("")
    for key, row in res["table"].items():
        L.append(f"* {key}: all draws {C.fmt_counts(row['all draws']['counts'])}; runs labeled global_min have "
                 f"|v - v*|/|v*| <= {row['max_v_err_global']:.1e} and angle <= {row['max_angle_global']:.1e}; "
                 f"draws meeting (a)-(c) that did not reach it: {C.fmt_counts(row['failures_met'])}"
                 + (f", final angles {row['failures_met_angles'][:10]}" if row["failures_met_angles"] else "") + ".")
    L += ["", "## Compared with the paper", ""]
    t0 = res["table"][f"normalized eta={ETAS[0]}"]
    f = t0["all met"]["frac"]
    nm = t0["all met"]["n"]
    L.append(
        f"* Remark 1: {C.pct(f)} of the {nm} draws meeting (a)-(c) reach the global minimizer with eq. 20 at eta = "
        f"{ETAS[0]} ({'agrees' if f == 1.0 else 'no draw to test' if f != f else 'disagrees: the remark says all of them do'}); at eta = {ETAS[1]}: "
        f"{C.pct(res['table'][f'normalized eta={ETAS[1]}']['all met']['frac'])}."
    )
    fb = [t0[g]["frac"] for g in GROUPS[1:4]]
    rest = {}
    for g in GROUPS[1:4]:
        for k, v in t0[g]["counts"].items():
            if k != "global_min":
                rest[k] = rest.get(k, 0) + v
    L.append(
        "* Draws failing exactly one condition reach the global minimizer in "
        f"{C.pct(fb[0])} ((a) fails), {C.pct(fb[1])} ((b) fails) and {C.pct(fb[2])} ((c) fails) of the cases at eta = "
        f"{ETAS[0]}; the others end {C.fmt_counts(rest)}. So the conditions are sufficient here, not necessary "
        "(the remark claims only sufficiency)."
    )
    c0 = res["table"][f"coarse eta={ETAS[0]}"]["all met"]["frac"]
    L.append(
        f"* Without the normalization (Algorithm 1, same draws, eta = {ETAS[0]}): {C.pct(c0)} of the draws meeting "
        f"(a)-(c) reach the global minimum."
    )
    L += ["", "Figures: `fractions.png`, `initializations.png`, `trajectories.png`."]
    return L


if __name__ == "__main__":
    r = main()
    print(open(r["summary"]).read())
