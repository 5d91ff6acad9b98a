"""Shared helpers for the paper-reproduction experiments (issue #4).

Nothing here knows an expected outcome: it parses arguments, draws random
vectors, counts outcomes, draws categorical heatmaps and writes files.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as `python experiments/x.py` from anywhere
    sys.path.insert(0, str(HERE.parent))

import jax  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

import stedyn as sd  # noqa: E402

# One colour per sd.OUTCOMES entry, in that order.
OUTCOME_COLORS = ("#2ca02c", "#d62728", "#ff7f0e", "#1f77b4", "#7f7f7f", "#e5e5e5")
assert len(OUTCOME_COLORS) == len(sd.OUTCOMES)


def setup():
    """float64 everywhere (the outcome tolerances and 1e-6 checks need it)."""
    jax.config.update("jax_enable_x64", True)


def parser(name, doc):
    p = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=doc.strip().splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=HERE / "out" / name,
                   help=f"output folder (default experiments/out/{name}/)")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run (used by the tests)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def unit(rng, shape):
    """Uniformly random unit vectors along the last axis."""
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def at_angle(w_star, angle, norm, rng):
    """Vectors at exact angles to ``w_star`` (rows), random perpendicular part.

    Batched twin of :func:`stedyn.w_at_angle` with a random perpendicular
    direction per row.
    """
    w_star = np.asarray(w_star, dtype=np.float64)
    wh = w_star / np.linalg.norm(w_star, axis=-1, keepdims=True)
    e = rng.normal(size=wh.shape)
    e -= np.sum(e * wh, axis=-1, keepdims=True) * wh
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    angle = np.asarray(angle, dtype=np.float64)[..., None]
    return np.asarray(norm, dtype=np.float64)[..., None] * (np.cos(angle) * wh + np.sin(angle) * e)


def angle_between(a, b):
    """Angle between rows of a and b (Kahan's stable formula)."""
    a = np.asarray(a) / np.linalg.norm(a, axis=-1, keepdims=True)
    b = np.asarray(b) / np.linalg.norm(b, axis=-1, keepdims=True)
    return 2.0 * np.arctan2(np.linalg.norm(a - b, axis=-1), np.linalg.norm(a + b, axis=-1))


def counts(outcomes):
    """``{outcome: count}`` over sd.OUTCOMES (zeros kept), for a 1-D array of names."""
    o = np.asarray(outcomes).reshape(-1)
    return {k: int(np.sum(o == k)) for k in sd.OUTCOMES}


def fmt_counts(c):
    total = sum(c.values())
    parts = [f"{k} {v}" for k, v in c.items() if v]
    return f"{', '.join(parts) or 'none'} (of {total})"


def pct(x):
    """A fraction as a percentage, or "n/a" for an empty selection (nan)."""
    return "n/a" if x != x else f"{x:.1%}"


def num(x, fmt=".3g"):
    """A number, or "n/a" for nan."""
    return "n/a" if x != x else format(x, fmt)


def frac(x):
    x = np.asarray(x, dtype=bool)
    return float(np.mean(x)) if x.size else float("nan")


def outcome_heatmap(ax, codes, title, xlabel, ylabel, xticks=None, yticks=None):
    """Categorical heatmap of outcome codes (rows x columns)."""
    cmap = ListedColormap(OUTCOME_COLORS)
    norm = BoundaryNorm(np.arange(len(sd.OUTCOMES) + 1) - 0.5, cmap.N)
    ax.imshow(np.asarray(codes), cmap=cmap, norm=norm, aspect="auto", origin="lower", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticks is not None:
        ax.set_xticks(*xticks)
    if yticks is not None:
        ax.set_yticks(*yticks)


def outcome_legend(fig, **kw):
    handles = [Patch(color=c, label=k) for k, c in zip(sd.OUTCOMES, OUTCOME_COLORS)]
    fig.legend(handles=handles, ncol=len(handles), frameon=False, **kw)


def save(fig, out, name):
    path = pathlib.Path(out) / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_summary(out, lines):
    path = pathlib.Path(out) / "summary.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.t0
