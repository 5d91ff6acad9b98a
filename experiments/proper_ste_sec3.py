"""Proper-STE Sec. 3: ReLU teacher on Gaussian input, identity vs ReLU vs clipped-ReLU STE.

Claim (Proper-STE paper, Sec. 3.2, items 1-3 after eq. 31, and Sec. 5): the
coarse gradient of the clipped-ReLU STE vanishes at the global minimum
(phi = 0, v = v_0) only at the scale |w| = w0 where lambda(w0) = 2 (eq. 30),
so Algorithm 1 with it converges there for every clip r and input std sigma;
the identity STE (eq. 25) has no fixed point at all and the ReLU STE (eq. 26)
only the saddle v_bar and the angle-pi point v_pi, so they do not converge
to the global minimum.

What this script does: draws random ReLU teachers (|v*| = |w*| = 1, a spread
of 1^T v* so that some have the spurious angle-pi minimum and some do not),
one clip r and sigma per teacher (log-uniform in [0.5, 2]), and for each a
row of initializations at initial angles spread over (0, pi) with random
v, perpendicular direction and |w| (log-uniform in [0.3, 3] w0). Every run
is simulated with all three STEs (Algorithm 1, ``rule="coarse"``) with the
same step size, lr = 0.5 / rho, rho the largest rate of the linearized
clipped-ReLU field at its fixed point (v_0, w0 w*/|w*|): (m+1)/4 for v and
lam1 sigma^4 / r across the angle (lam1 ~ 0.42 measured by a finite
difference); the step is stable near that point and the slowest mode (the
scale |w|) still contracts within the run. A second batch sweeps an
(r, sigma) grid with one teacher and one initialization.

Outputs in --out: ``outcomes_heatmap.png`` (outcome per teacher x initial
angle, one panel per STE), ``crelu_scale.png`` (final |w| vs w0(r, sigma);
relative error on the (r, sigma) grid), ``trajectories.png`` (one
initialization, three STEs), ``summary.md``.
"""

from __future__ import annotations

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

import stedyn as sd  # noqa: E402
from _common import plt  # noqa: E402

NAME = "proper_ste_sec3"
STES = ("crelu", "relu", "identity")


def _teachers(rng, k, m, n):
    """|v*| = |w*| = 1; v* = normalize(g + c 1), c ~ U(0, 2) spreads 1^T v*."""
    c = rng.uniform(0.0, 2.0, size=(k, 1))
    vs = rng.normal(size=(k, m)) + c
    vs /= np.linalg.norm(vs, axis=1, keepdims=True)
    ws = C.unit(rng, (k, n))
    return vs, ws


def _margin(vs):
    """Normalized saddle margin ((m+1)|v*|^2 - 2 (1^T v*)^2) / ((m+1)|v*|^2)."""
    m = vs.shape[-1]
    vv = np.sum(vs**2, -1)
    return ((m + 1) * vv - 2 * np.sum(vs, -1) ** 2) / ((m + 1) * vv)


def _tangential_rate(m, n, rng):
    """Eigenvalue of the clipped-ReLU field across the angle at its fixed point, sigma = r = 1.

    Measured with one finite difference on the public coarse gradient at
    (v_0, |w| = w0, angle eps) of a random unit teacher. For |v*| = |w*| = 1 it
    depends on sigma and r only, as sigma^4 / r (the gradient carries sigma
    kappa^2 ~ sigma^3 and the angle rate a further 1 / w0 ~ sigma / r).
    """
    vs, ws = _teachers(rng, 1, m, n)
    T = sd.Teacher(jnp.asarray(vs[0]), jnp.asarray(ws[0]), "relu")
    v0, _ = sd.global_min(T, 1.0)
    w0 = float(sd.crelu_w0(1.0, 1.0))
    eps = 1e-6
    w = sd.w_at_angle(jnp.asarray(ws[0]), eps, norm=w0)
    _, gw = sd.coarse_grad(v0, w, T, sd.Gaussian(1.0), ste="crelu", r=1.0)
    wh = w / jnp.linalg.norm(w)
    return float(jnp.linalg.norm(gw - jnp.dot(gw, wh) * wh)) / (w0 * eps)


def _lr(m, sigma, r, lam1):
    """0.5 / the largest rate at the clipped-ReLU fixed point: max((m+1)/4 for v, lam1 sigma^4 / r for w)."""
    return 0.5 / np.maximum((m + 1) / 4.0, lam1 * sigma**4 / r)


def main(argv=None):
    p = C.parser(NAME, __doc__)
    p.add_argument("--teachers", type=int, default=None, help="number of random teachers (default 24; quick 3)")
    p.add_argument("--inits", type=int, default=None, help="initial angles per teacher (default 16; quick 4)")
    p.add_argument("--steps", type=int, default=None, help="steps of Algorithm 1 (default 20000)")
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--n", type=int, default=8)
    args = p.parse_args(argv)
    C.setup()
    clock = C.Timer()
    quick = args.quick
    K = args.teachers or (3 if quick else 24)
    J = args.inits or (4 if quick else 16)
    steps = args.steps or 20000
    G = 3 if quick else 6  # (r, sigma) grid side
    m, n = args.m, args.n
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    # --- heatmap batch: K teachers x J initial angles --------------------------
    vs_k, ws_k = _teachers(rng, K, m, n)
    sig_k = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=K))
    r_k = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=K))
    order = np.argsort(_margin(vs_k))  # rows sorted by saddle margin
    vs_k, ws_k, sig_k, r_k = vs_k[order], ws_k[order], sig_k[order], r_k[order]
    phi0 = (np.arange(J) + 0.5) / J * np.pi
    vs = np.repeat(vs_k, J, 0)
    ws = np.repeat(ws_k, J, 0)
    sig = np.repeat(sig_k, J)
    r = np.repeat(r_k, J)
    a0 = np.tile(phi0, K)
    # --- (r, sigma) grid batch: one teacher (first-drawn), one init -----------
    grid_vals = np.exp(np.linspace(np.log(0.5), np.log(2.0), G))
    gr, gs = np.meshgrid(grid_vals, grid_vals, indexing="ij")  # [i_r, i_sigma]
    vg, wg = _teachers(np.random.default_rng(args.seed + 1), 1, m, n)
    vs = np.concatenate([vs, np.repeat(vg, G * G, 0)])
    ws = np.concatenate([ws, np.repeat(wg, G * G, 0)])
    sig = np.concatenate([sig, gs.ravel()])
    r = np.concatenate([r, gr.ravel()])
    a0 = np.concatenate([a0, np.full(G * G, np.pi / 3)])
    B = len(r)
    nh = K * J

    w0_theory = r / (sig * float(sd.crelu_t0()))
    kappa = 2 * sig / np.sqrt(2 * np.pi)  # |w*| = 1: v_0 = kappa v*
    wn_init = w0_theory * np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=B))
    w_init = C.at_angle(ws, a0, wn_init, rng)
    v_init = rng.normal(size=(B, m)) * (kappa / np.sqrt(m))[:, None]
    lam1 = _tangential_rate(m, n, np.random.default_rng(args.seed + 2))
    lr = _lr(m, sig, r, lam1)

    teacher = sd.Teacher(jnp.asarray(vs), jnp.asarray(ws), "relu")
    data = sd.Gaussian(jnp.asarray(sig))
    res = {}
    for ste in STES:
        res[ste] = sd.run(
            jnp.asarray(v_init), jnp.asarray(w_init), teacher, data,
            ste=ste, r=jnp.asarray(r), lr=jnp.asarray(lr), steps=steps,
        )
    t_sim = clock()

    # --- measurements -----------------------------------------------------------
    T_all = sd.Teacher(jnp.asarray(vs), jnp.asarray(ws), "relu")
    spur = np.asarray(jax.vmap(lambda a, b: sd.saddle_exists(sd.Teacher(a, b, "relu")))(T_all.v, T_all.w))
    v0_theory = np.asarray(jax.vmap(lambda a, b, s: sd.global_min(sd.Teacher(a, b, "relu"), s)[0])(
        T_all.v, T_all.w, jnp.asarray(sig)))
    L_glob = np.asarray(jax.vmap(lambda a, b, s: sd.stationary_loss(sd.Teacher(a, b, "relu"), 0.0, s))(
        T_all.v, T_all.w, jnp.asarray(sig)))
    margin = _margin(vs)
    hm = np.arange(B) < nh
    grid = ~hm
    meas = {ste: _measure(res[ste], wn_init, w0_theory, v0_theory, L_glob) for ste in STES}
    mc = meas["crelu"]
    glob = mc["outcome"] == "global_min"
    sp = mc["outcome"] == "spurious_min"

    result = {"runs": int(B), "steps": steps, "teachers": K, "inits": J, "t0": float(sd.crelu_t0()),
              "lr_range": (float(lr.min()), float(lr.max())), "lam1": lam1}
    for ste in STES:
        M = meas[ste]
        result[f"{ste}_counts"] = C.counts(M["outcome"][hm])
        result[f"{ste}_grid_counts"] = C.counts(M["outcome"][grid])
        result[f"{ste}_where"] = {
            grp: {end: _where(M, hm & sel, end) for end in ENDS}
            for grp, sel in (("no_spurious", ~spur), ("spurious", spur))
        }
    result["crelu_global_frac"] = C.frac(glob[hm])
    result["crelu_global_frac_no_spurious"] = C.frac(glob[hm & ~spur])
    result["crelu_global_frac_with_spurious"] = C.frac(glob[hm & spur])
    result["crelu_grid_global_frac"] = C.frac(glob[grid])
    result["crelu_global_n"] = int(glob.sum())
    if glob.any():
        result["crelu_global_max_w_rel_err"] = float(np.max(np.abs(mc["w_rel"][glob])))
        result["crelu_global_max_v_rel_err"] = float(np.max(mc["v_err"][glob]))
        result["crelu_global_max_angle"] = float(np.max(mc["angle"][glob]))
        ratio = wn_init[glob] / w0_theory[glob]
        result["crelu_global_init_w_ratio_range"] = (float(ratio.min()), float(ratio.max()))
    result["crelu_global_w_norm"] = mc["w_norm"][glob]
    result["crelu_global_w0"] = w0_theory[glob]
    result["crelu_spurious_min_w_ratio_range"] = (
        (float(np.min(mc["w_rel"][sp] + 1)), float(np.max(mc["w_rel"][sp] + 1))) if sp.any() else None)
    result["crelu_spurious_min_from_small_angle"] = int(np.sum(sp & hm & (a0 < np.pi / 2)))
    vv0 = np.sum(v_init * vs, axis=1)
    result["crelu_spurious_min_from_small_angle_vdotvs_neg"] = int(np.sum(sp & hm & (a0 < np.pi / 2) & (vv0 < 0)))
    # runs heading to the angle-pi point without being labeled there: how fast do they close in?
    pi_slow = hm & (mc["end"] == "pi") & ~sp
    result["crelu_pi_unlabeled"] = int(pi_slow.sum())
    result["crelu_pi_unlabeled_outcomes"] = C.counts(mc["outcome"][pi_slow])
    if pi_slow.any():
        result["crelu_pi_gap_halving_median"] = float(np.median(mc["pi_gap_ratio"][pi_slow]))
        result["crelu_pi_gap_max"] = float(np.max(np.pi - mc["angle"][pi_slow]))

    figures = {}
    figures["outcomes_heatmap"] = _fig_heatmap(out, meas, K, J, nh, hm, phi0, vs_k, r_k, sig_k, steps)
    figures["crelu_scale"] = _fig_scale(out, mc, w0_theory, glob, sp, hm, grid, nh, G, grid_vals, steps)
    k_ex = J - 1  # lowest-margin teacher (no spurious minimum), largest initial angle
    figures["trajectories"] = _fig_traj(out, res, meas, k_ex, L_glob, w0_theory, margin, r, sig, a0, lr)
    result["figures"] = figures
    result["seconds"] = clock()
    result["runs_data"] = dict(meas=meas, v_init=v_init, w_init=w_init, vs=vs, ws=ws, r=r, sigma=sig,
                               init_angle=a0, w0=w0_theory, lr=lr, margin=margin, spurious=spur,
                               heatmap=hm, result=res)
    C.write_summary(out, _summary(result, m, n, K, J, G, steps, B, t_sim, spur, hm))
    result["summary"] = str(out / "summary.md")
    return result


ENDS = ("zero", "pi", "between")
"""Where a run ends, by its final angle: < 0.01 (the global-minimum ray), > pi - 0.1 (the angle-pi point), else."""


def _measure(R, wn_init, w0_theory, v0_theory, L_glob):
    o = np.asarray(R.outcome)
    v = np.asarray(R.v)
    wn = np.asarray(R.final["w_norm"])
    ang = np.asarray(R.final["angle"])
    tr_w = np.asarray(R.trajectory["w_norm"])
    tr_a = np.asarray(R.trajectory["angle"])
    nrec = tr_w.shape[-1]
    q, h = (3 * (nrec - 1)) // 4, (nrec - 1) // 2
    end = np.where(ang < 0.01, "zero", np.where(ang > np.pi - 0.1, "pi", "between"))
    return dict(
        outcome=o,
        code=np.asarray(R.outcome_code),
        angle=ang,
        end=end,
        w_norm=wn,
        w_growth=wn / wn_init,
        # |w| change over the last quarter of the run (log): ~0 bounded, ~log(4/3) linear growth
        w_last_quarter=np.log(tr_w[:, -1] / tr_w[:, q]),
        # (pi - angle) at half time over (pi - angle) at the end: 2 for a 1/t approach
        pi_gap_ratio=(np.pi - tr_a[:, h]) / np.maximum(np.pi - tr_a[:, -1], 1e-300),
        v_err=np.linalg.norm(v - v0_theory, axis=1) / np.linalg.norm(v0_theory, axis=1),
        w_rel=wn / w0_theory - 1.0,
        loss_excess=(np.asarray(R.final["loss"]) - L_glob) / L_glob,
        stop=np.asarray(R.stop_step),
    )


def _where(M, sel, end):
    """Count, |w| growth and v error of the selected runs that end at ``end``."""
    s = sel & (M["end"] == end)
    d = {"n": int(s.sum())}
    if s.any():
        d["w_growth_median"] = float(np.median(M["w_growth"][s]))
        d["w_growth_min"] = float(np.min(M["w_growth"][s]))
        d["w_last_quarter_median"] = float(np.median(M["w_last_quarter"][s]))
        d["v_err_median"] = float(np.median(M["v_err"][s]))
        d["loss_excess_median"] = float(np.median(M["loss_excess"][s]))
        d["outcomes"] = C.counts(M["outcome"][s])
    return d


def _fig_heatmap(out, meas, K, J, nh, hm, phi0, vs_k, r_k, sig_k, steps):
    fig, axes = plt.subplots(1, 3, figsize=(16, 6.0), sharey=True)
    yt = (np.arange(K), [f"{mg:+.2f} r={rr:.2f} s={ss:.2f}" for mg, rr, ss in zip(_margin(vs_k), r_k, sig_k)])
    every = max(1, J // 8)
    xt = (np.arange(J)[::every], [f"{a:.2f}" for a in phi0[::every]])
    split = np.searchsorted(_margin(vs_k), 0.0) - 0.5
    for ax, ste in zip(axes, STES):
        M = meas[ste]
        codes = M["code"][:nh].reshape(K, J)
        C.outcome_heatmap(ax, codes, f"{ste} STE\n" + textwrap.fill(C.fmt_counts(C.counts(M["outcome"][hm])), 50),
                          "initial angle phi(w0, w*) [rad]", "teacher: margin, r, sigma" if ste == STES[0] else "",
                          xticks=xt, yticks=yt)
        jj, kk = np.meshgrid(np.arange(J), np.arange(K))
        at_pi = (M["end"][:nh] == "pi").reshape(K, J)
        ax.plot(jj[at_pi], kk[at_pi], "k.", ms=4)
        ax.axhline(split, color="k", lw=1.0, ls="--")
        ax.tick_params(axis="y", labelsize=6)
    fig.suptitle(
        f"ReLU teacher, Algorithm 1, {steps} steps. Rows sorted by the saddle margin "
        f"((m+1)|v*|^2 - 2(1'v*)^2) / ((m+1)|v*|^2); above the dashed line the spurious angle-pi minimum exists.\n"
        f"Colour: sd.run outcome; black dot: final angle > pi - 0.1.",
        fontsize=10,
    )
    fig.subplots_adjust(top=0.80, bottom=0.14)
    C.outcome_legend(fig, loc="lower center", bbox_to_anchor=(0.5, 0.0))
    return str(C.save(fig, out, "outcomes_heatmap.png"))


def _fig_scale(out, mc, w0_theory, glob, sp, hm, grid, nh, G, grid_vals, steps):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    ax = axes[0]
    ax.loglog(w0_theory[glob & hm], mc["w_norm"][glob & hm], "o", ms=4, label="heatmap runs at global_min")
    ax.loglog(w0_theory[glob & grid], mc["w_norm"][glob & grid], "s", ms=6, mfc="none",
              label="(r, sigma) grid at global_min")
    ax.loglog(w0_theory[sp], mc["w_norm"][sp], "x", ms=4, color="C3", label="runs at spurious_min")
    lo, hi = w0_theory.min() / 1.5, w0_theory.max() * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="|w| = w0(r, sigma)")
    ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0) if lo <= t <= hi * 2]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("w0(r, sigma) = r / (sigma t0), where lambda(w0) = 2")
    ax.set_ylabel("final |w|, clipped-ReLU STE")
    ax.legend(fontsize=8)
    ax.set_title("clipped-ReLU STE: final scale vs eq. 30", fontsize=10)
    ax = axes[1]
    err = np.abs(mc["w_rel"][grid]).reshape(G, G)
    im = ax.imshow(np.log10(np.maximum(err, 1e-16)).T, origin="lower", cmap="viridis", aspect="auto")
    for i in range(G):
        for j in range(G):
            ax.text(i, j, mc["outcome"][nh + i * G + j].replace("_", "\n"), ha="center", va="center",
                    fontsize=6, color="w")
    ax.set_xticks(np.arange(G), [f"{x:.2f}" for x in grid_vals])
    ax.set_yticks(np.arange(G), [f"{x:.2f}" for x in grid_vals])
    ax.set_xlabel("clip r")
    ax.set_ylabel("sigma")
    fig.colorbar(im, ax=ax, label="log10 | |w_final| / w0(r, sigma) - 1 |")
    ax.set_title(f"(r, sigma) grid: one teacher, initial angle pi/3, {steps} steps", fontsize=10)
    return str(C.save(fig, out, "crelu_scale.png"))


def _fig_traj(out, res, meas, k, L_glob, w0_theory, margin, r, sig, a0, lr):
    t = res["crelu"].steps
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    for ste, ls in zip(STES, ("-", "-", "--")):
        tr = {kk: np.asarray(vv)[k] for kk, vv in res[ste].trajectory.items()}
        kw = dict(label=ste, ls=ls)
        axes[0].semilogy(t, np.maximum(tr["loss"] - L_glob[k], 1e-16), **kw)
        axes[1].semilogy(t, np.maximum(tr["angle"], 1e-16), **kw)
        axes[2].semilogy(t, tr["w_norm"] / w0_theory[k], **kw)
        axes[3].semilogy(t, np.maximum(np.hypot(tr["dv_norm"], tr["dw_norm"]), 1e-18), **kw)
    for ax, lab in zip(axes, ("loss - global-min loss", "angle(w, w*) [rad]", "|w| / w0(r, sigma)",
                              "|(E dl/dv, E g_ste)|")):
        ax.set_ylabel(lab)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"One run: margin {margin[k]:+.2f} (no spurious minimum), r = {r[k]:.2f}, sigma = {sig[k]:.2f}, "
        f"initial angle {a0[k]:.2f}, lr = {lr[k]:.3g}. Outcomes: "
        + ", ".join(f"{s} {meas[s]['outcome'][k]}" for s in STES),
        fontsize=10,
    )
    fig.tight_layout()
    return str(C.save(fig, out, "trajectories.png"))


def _fmt_where(d):
    if not d["n"]:
        return "0"
    return (f"{d['n']} (|w_end|/|w_init| median {d['w_growth_median']:.3g}, min {d['w_growth_min']:.3g}; "
            f"log |w| change over the last quarter median {d['w_last_quarter_median']:.2g}; "
            f"|v - v_0|/|v_0| median {d['v_err_median']:.2g}; sd.run: {C.fmt_counts(d['outcomes'])})")


def _summary(res, m, n, K, J, G, steps, B, t_sim, spur, hm):
    L = ["# Proper-STE Sec. 3: ReLU teacher, identity / ReLU / clipped-ReLU STE", ""]
    n_sp = int(np.sum(spur[hm])) // J
    L.append(
        f"Setup: m = {m}, n = {n}. {K} random ReLU teachers (|v*| = |w*| = 1; {n_sp} of them have the "
        f"spurious angle-pi minimum, sd.saddle_exists), each with its own clip r and input std sigma "
        f"(log-uniform in [0.5, 2]), x {J} initial angles spread over (0, pi), random v0 "
        f"(N(0, |v_0|^2/m I)) and |w0| log-uniform in [0.3, 3] w0(r, sigma); plus a {G} x {G} (r, sigma) "
        f"grid (one teacher, initial angle pi/3). Algorithm 1 (`rule=\"coarse\"`), {steps} steps, the same "
        f"lr for the three STEs: 0.5 / max((m+1)/4, {res['lam1']:.4f} sigma^4 / r), the largest rate of the "
        f"clipped-ReLU field linearized at its fixed point, from {res['lr_range'][0]:.3g} to "
        f"{res['lr_range'][1]:.3g}. {B} runs per STE; {t_sim:.0f} s of simulation, {res['seconds']:.0f} s "
        f"in all. Outcomes are sd.run's with the default sd.Tolerances; \"ends at\" is by the final "
        f"angle: < 0.01 (global-minimum ray), > pi - 0.1 (angle-pi point), else between."
    )
    L += ["", "## Measured", "", "| STE | heatmap runs (sd.run outcome) | (r, sigma) grid |", "|---|---|---|"]
    for ste in STES:
        L.append(f"| {ste} | {C.fmt_counts(res[f'{ste}_counts'])} | {C.fmt_counts(res[f'{ste}_grid_counts'])} |")
    L.append("")
    L.append("Where the heatmap runs end:")
    L.append("")
    for ste in STES:
        for grp, label in (("no_spurious", "teachers without a spurious minimum"),
                           ("spurious", "teachers with one")):
            w = res[f"{ste}_where"][grp]
            L.append(f"* {ste}, {label}: angle 0: {_fmt_where(w['zero'])}; angle pi: {_fmt_where(w['pi'])}; "
                     f"between: {_fmt_where(w['between'])}.")
    L.append("")
    L.append(
        f"* Clipped ReLU: sd.run says global_min for {C.pct(res['crelu_global_frac'])} of the heatmap runs "
        f"({C.pct(res['crelu_global_frac_no_spurious'])} for teachers without a spurious minimum, "
        f"{C.pct(res['crelu_global_frac_with_spurious'])} with one) and {C.pct(res['crelu_grid_global_frac'])} of "
        f"the (r, sigma) grid."
    )
    if res["crelu_global_n"]:
        lo, hi = res["crelu_global_init_w_ratio_range"]
        L.append(
            f"* The {res['crelu_global_n']} clipped-ReLU runs at global_min: max | |w|/w0(r, sigma) - 1 | = "
            f"{res['crelu_global_max_w_rel_err']:.2e} (initial |w|/w0 from {lo:.2f} to {hi:.2f}); max "
            f"|v - v_0|/|v_0| = {res['crelu_global_max_v_rel_err']:.2e}; max angle "
            f"{res['crelu_global_max_angle']:.2e} rad. w0 = r / (sigma t0), t0 = {res['t0']:.12f}."
        )
    if res["crelu_spurious_min_w_ratio_range"]:
        lo, hi = res["crelu_spurious_min_w_ratio_range"]
        L.append(
            f"* Clipped-ReLU runs at spurious_min: |w|/w0 from {lo:.3g} to {hi:.3g} (no scale is picked "
            f"there: eq. 28 makes v_pi a fixed point at every |w|). {res['crelu_spurious_min_from_small_angle']} "
            f"of them started at an angle < pi/2 ({res['crelu_spurious_min_from_small_angle_vdotvs_neg']} of "
            f"those with v0 . v* < 0, which first turns w away from w*)."
        )
    if res["crelu_pi_unlabeled"]:
        L.append(
            f"* {res['crelu_pi_unlabeled']} clipped-ReLU heatmap runs end within 0.1 rad of pi without being "
            f"labeled spurious_min (sd.run: {C.fmt_counts(res['crelu_pi_unlabeled_outcomes'])}); their gap "
            f"pi - angle is still closing, by a median factor {res['crelu_pi_gap_halving_median']:.2f} between "
            f"half time and the end (2 for a 1/t approach), max gap {res['crelu_pi_gap_max']:.3f} rad: near "
            f"pi the coarse field's pull on the angle is quadratic in pi - angle, so they approach v_pi "
            f"algebraically and do not reach the angle tolerance (0.01) in {steps} steps."
        )
    L += ["", "## Compared with the paper", ""]
    L.append(_verdict(res))
    L += ["", "Figures: `outcomes_heatmap.png`, `crelu_scale.png`, `trajectories.png`."]
    return L


def _verdict(res):
    lines = []
    if res["crelu_global_n"]:
        lines.append(
            f"* Clipped ReLU, the scale: agrees. Every run that reached the global minimum sits at "
            f"|w| = w0(r, sigma) to a relative {res['crelu_global_max_w_rel_err']:.1e}, with v = v_0, for "
            f"every r and sigma tried and every initial |w| (eq. 30-31, Sec. 3.2.3 item 3)."
        )
    w_ns = res["crelu_where"]["no_spurious"]
    n_ns = sum(w_ns[e]["n"] for e in ENDS)
    w_s = res["crelu_where"]["spurious"]
    n_s = sum(w_s[e]["n"] for e in ENDS)
    all_ns = w_ns["zero"]["n"] == n_ns
    txt = (f"* Clipped ReLU, where it converges: {'agrees' if all_ns else 'mostly agrees'} where the loss has no "
           f"spurious minimum ({w_ns['zero']['n']} of {n_ns} runs reached v_0). ")
    if n_s:
        txt += (f"Where it has one, {w_s['zero']['n']} of {n_s} reached v_0 and {w_s['pi']['n']} went to the "
                f"spurious angle-pi minimum, which eq. 28 makes a fixed point of the clipped-ReLU STE as well. ")
        if w_s["pi"]["n"]:
            txt += ("The paper's statement (all stationary points are vanishing points of the cReLU gradient, "
                    "and the global one is picked at w0) is about fixed points; read as 'converges to phi = 0 "
                    "from any start' it does not hold for teachers with a spurious minimum.")
    lines.append(txt)
    for ste in ("relu", "identity"):
        z_ns = res[f"{ste}_where"]["no_spurious"]["zero"]
        p_s = res[f"{ste}_where"]["spurious"]["pi"]
        z_s = res[f"{ste}_where"]["spurious"]["zero"]
        c = res[f"{ste}_counts"]
        txt = (f"* {ste} STE: agrees that it does not converge to the global minimum ({c['global_min']} of "
               f"{sum(c.values())} runs labeled global_min). Where it goes: ")
        if z_ns["n"]:
            txt += (f"without a spurious minimum, {z_ns['n']} of {n_ns} runs end on the global-minimum ray "
                    f"(angle -> 0, v -> v_0 to a median {z_ns['v_err_median']:.0e}, loss at the global-minimum "
                    f"value) while |w| keeps growing (median x{z_ns['w_growth_median']:.3g} over the run, still "
                    f"{z_ns['w_last_quarter_median']:.2f} in log over its last quarter); ")
        txt += (f"with a spurious minimum, {p_s['n']} of {n_s} end near angle pi and {z_s['n']} on the "
                f"global-minimum ray.")
        if ste == "relu":
            txt += (" The paper (Sec. 3.2.2) says the ReLU STE 'always converges to phi = pi' when the spurious "
                    f"minimum exists: measured, {p_s['n']} of {n_s} runs"
                    + (" (it disagrees)." if p_s["n"] < n_s else "."))
        else:
            n_stat = sum(c[k] for k in ("global_min", "spurious_min", "saddle"))
            txt += (f" Eq. 25 has no zero; sd.run finds {n_stat} of {sum(c.values())} identity runs stationary"
                    + (f", and near pi |w| grows too (median x{p_s['w_growth_median']:.3g})." if p_s["n"] else "."))
        lines.append(txt)
    return "\n".join(lines)


if __name__ == "__main__":
    r = main()
    print(open(r["summary"]).read())
