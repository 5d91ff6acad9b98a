"""Figures from sweep results (the arrays of ``results.npz``) with matplotlib."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ._config import ConfigError
from ._dynamics import OUTCOMES

_COLORS = {
    "global_min": "tab:green",
    "spurious_min": "tab:red",
    "saddle": "tab:orange",
    "unbounded": "tab:purple",
    "diverged": "black",
    "not_converged": "tab:gray",
}
_LABELS = {
    "angle": "initial angle to w* (rad)",
    "w_norm": "initial |w|",
    "v_scale": "v0 scale",
    "r": "clip r",
    "sigma": "input std sigma",
    "lr": "learning rate",
    "m": "m (rows)",
    "n": "n (filter size)",
    "seed": "seed",
    "ste": "STE",
    "activation": "teacher",
    "rule": "update rule",
}


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v):
    if isinstance(v, (str, np.str_)):
        return str(v)
    v = float(v)
    return f"{v:.3g}"


def _ticks(n, most=6):
    return sorted(set(np.linspace(0, n - 1, min(n, most)).round().astype(int).tolist()))


def _default_axes(res):
    axes = list(res["axis_names"])
    numeric = [a for a in axes if a not in ("ste", "activation", "rule", "seed")]
    cats = [a for a in axes if a in ("ste", "activation", "rule")]
    x = numeric[0] if numeric else (axes[0] if axes else "")
    y = numeric[1] if len(numeric) > 1 else ""
    panels = cats[0] if cats else ""
    return x, y, panels


def heatmap(res, path, *, x="", y="", panels="", outcomes=()):
    """Fraction of runs per outcome over two axes, one column per panel value.

    Rows are outcomes (those given, else every outcome that occurs); each
    cell averages over all other axes (seeds, ...). Saves a PNG at ``path``.
    """
    plt = _mpl()
    axes = list(res["axis_names"])
    dx, dy, dp = _default_axes(res)
    x, y, panels = x or dx, y or dy, panels if panels is not None else dp
    for k, a in (("x", x), ("y", y), ("panels", panels)):
        if a and a not in axes:
            raise ConfigError(f"plot {k}={a!r} is not a swept axis; swept axes: {axes}")
    if not x:
        raise ConfigError("a heatmap needs at least one swept axis")
    code = res["outcome_code"]
    present = [o for i, o in enumerate(OUTCOMES) if np.any(code == i)]
    rows = list(outcomes) or present
    xv = res["axis_" + x]
    xi = res["index_" + x]
    yv = res["axis_" + y] if y else np.asarray([""])
    yi = res["index_" + y] if y else np.zeros_like(xi)
    pv = res["axis_" + panels] if panels else np.asarray([""])
    pi = res["index_" + panels] if panels else np.zeros_like(xi)
    ncol, nrow = len(pv), len(rows)
    fig, axs = plt.subplots(
        nrow, ncol, figsize=(2.9 * ncol + 1.6, 2.3 * nrow + 1.0), squeeze=False, constrained_layout=True
    )
    total = np.zeros((len(pv), len(yv), len(xv)))
    np.add.at(total, (pi, yi, xi), 1)
    im = None
    xt = _ticks(len(xv))
    yt = _ticks(len(yv))
    for r, o in enumerate(rows):
        k = OUTCOMES.index(o)
        cnt = np.zeros_like(total)
        np.add.at(cnt, (pi[code == k], yi[code == k], xi[code == k]), 1)
        frac = cnt / np.maximum(total, 1)
        for c in range(ncol):
            ax = axs[r, c]
            im = ax.imshow(frac[c], origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(xt)
            ax.set_xticklabels([_fmt(xv[i]) for i in xt], fontsize=7)
            ax.set_yticks(yt)
            ax.set_yticklabels([_fmt(yv[i]) for i in yt] if y else [], fontsize=7)
            if r == 0 and panels:
                ax.set_title(f"{panels} = {_fmt(pv[c])}", fontsize=10)
            if r == nrow - 1:
                ax.set_xlabel(_LABELS.get(x, x), fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{o}\n" + (_LABELS.get(y, y) if y else ""), fontsize=8)
    fig.colorbar(im, ax=axs, shrink=0.6, label="fraction of runs (rows: outcome)")
    name = json.loads(str(res["config_json"])).get("name", "")
    fig.suptitle(f"{name}: where the runs end, fraction per cell", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pick(res, max_n):
    C = len(res["outcome_code"])
    if max_n >= C:
        return np.arange(C)
    # Spread over the grid and keep every outcome represented.
    idx = set(np.linspace(0, C - 1, max_n).astype(int).tolist())
    for k in np.unique(res["outcome_code"]):
        idx.add(int(np.nonzero(res["outcome_code"] == k)[0][0]))
    return np.asarray(sorted(idx))


def trajectories(res, path, *, max_n=200):
    """Loss, |w| and angle against steps for up to ``max_n`` runs, coloured by outcome."""
    if "traj_loss" not in res:
        raise ConfigError("these results hold no trajectories (output.trajectories = false)")
    plt = _mpl()
    steps = res["record_steps"]
    sel = _pick(res, max_n)
    fig, axs = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, ax, log in (("loss", axs[0], True), ("w_norm", axs[1], True), ("angle", axs[2], False)):
        for i in sel:
            o = OUTCOMES[res["outcome_code"][i]]
            ax.plot(steps, res["traj_" + name][i], color=_COLORS[o], alpha=0.5, lw=0.8)
        ax.set_xlabel("step")
        ax.set_title({"loss": "population loss", "w_norm": "|w|", "angle": "angle(w, w*)"}[name])
        if log:
            ax.set_yscale("log")
    handles = [plt.Line2D([], [], color=_COLORS[o], label=o) for o in OUTCOMES if np.any(res["outcome"][sel] == o)]
    axs[2].legend(handles=handles, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def phase_portrait(res, path, *, max_n=200):
    """Angle to ``w*`` against ``|w|`` along each run (start o, end x)."""
    if "traj_loss" not in res:
        raise ConfigError("these results hold no trajectories (output.trajectories = false)")
    plt = _mpl()
    sel = _pick(res, max_n)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i in sel:
        o = OUTCOMES[res["outcome_code"][i]]
        wn, ang = res["traj_w_norm"][i], res["traj_angle"][i]
        ax.plot(wn, ang, color=_COLORS[o], alpha=0.5, lw=0.8)
        ax.plot(wn[0], ang[0], "o", color=_COLORS[o], ms=2.5)
        ax.plot(wn[-1], ang[-1], "x", color=_COLORS[o], ms=4)
    ax.set_xscale("log")
    ax.set_xlabel("|w|")
    ax.set_ylabel("angle(w, w*) (rad)")
    ax.set_ylim(-0.05, math.pi + 0.05)
    handles = [plt.Line2D([], [], color=_COLORS[o], label=o) for o in OUTCOMES if np.any(res["outcome"][sel] == o)]
    ax.legend(handles=handles, fontsize=8)
    ax.set_title("phase portrait (o start, x end)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_results(res, out, *, x="", y="", panels=None, outcomes=None, max_n=None):
    """Write ``heatmap.png``, ``trajectories.png`` and ``phase.png`` into ``out``."""
    plot = json.loads(str(res["config_json"])).get("plot", {})
    x = x or plot.get("x", "")
    y = y or plot.get("y", "")
    if panels is None:
        panels = plot.get("panels", "") or _default_axes(res)[2]
    outcomes = outcomes if outcomes is not None else plot.get("outcomes", [])
    max_n = plot.get("max_trajectories", 200) if max_n is None else max_n
    written = []
    if len(res["axis_names"]):
        p = os.path.join(out, "heatmap.png")
        heatmap(res, p, x=x, y=y, panels=panels, outcomes=outcomes)
        written.append(p)
    if "traj_loss" in res and max_n > 0:
        for fn, name in ((trajectories, "trajectories.png"), (phase_portrait, "phase.png")):
            p = os.path.join(out, name)
            fn(res, p, max_n=max_n)
            written.append(p)
    return written
