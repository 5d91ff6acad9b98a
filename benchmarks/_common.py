"""Shared pieces of the benchmark suite: the machine, timing, test problems.

Timing rules (every module follows them): each contender is warmed up first
(compiled, caches filled), every JAX call ends in ``jax.block_until_ready``,
contenders that are compared run *interleaved* (a, b, c, a, b, c, ...) so
that load from other processes on a shared machine hits all of them alike,
and the reported time is the median over the repetitions.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time

import numpy as np


def machine_info():
    """What the numbers were measured on: CPU model, cores, versions, load."""
    import jax

    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
    }
    try:
        import jaxlib

        info["jaxlib"] = jaxlib.__version__
    except Exception:  # pragma: no cover - jaxlib always ships with jax
        pass
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        info["scipy"] = None
    info["load_average"] = _load()
    return info


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except Exception:
        pass
    return platform.processor() or "unknown"


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def block(x):
    """``jax.block_until_ready`` for JAX outputs; NumPy outputs pass through."""
    import jax

    return jax.block_until_ready(x)


def timed(fn):
    """Seconds one call of ``fn()`` takes (JAX outputs waited for)."""
    t0 = time.perf_counter()
    block(fn())
    return time.perf_counter() - t0


def interleaved(fns, reps):
    """Run ``{name: fn}`` ``reps`` times in turn; ``{name: [seconds, ...]}``.

    The order is rotated every repetition, so no contender always runs first
    (right after another's cache-cold start) or last.
    """
    names = list(fns)
    out = {k: [] for k in names}
    for i in range(reps):
        order = names[i % len(names):] + names[: i % len(names)]
        for k in order:
            out[k].append(timed(fns[k]))
    return out


def median(xs):
    return float(statistics.median(xs))


def spread(xs):
    """Relative spread ``(max - min) / median`` of repeated timings."""
    m = statistics.median(xs)
    return float((max(xs) - min(xs)) / m) if m > 0 else float("nan")


def problem(batch, m, n, dtype, seed=0):
    """NumPy arrays ``v0 (B, m), w0 (B, n), v* (B, m), w* (B, n)`` of ``dtype``.

    The distribution of the default sweep (:func:`stedyn._sweep.draw_problem`):
    ``v* ~ N(0, I_m)``, ``w*`` a uniform unit vector, ``v0 ~ N(0, I_m)`` and
    ``w0`` a uniform unit vector (a uniformly random direction, so the initial
    angles spread over (0, pi) around pi/2).
    """
    rng = np.random.default_rng(seed)
    vs = rng.normal(size=(batch, m))
    ws = rng.normal(size=(batch, n))
    ws /= np.linalg.norm(ws, axis=1, keepdims=True)
    v0 = rng.normal(size=(batch, m))
    w0 = rng.normal(size=(batch, n))
    w0 /= np.linalg.norm(w0, axis=1, keepdims=True)
    return tuple(np.ascontiguousarray(x, dtype=dtype) for x in (v0, w0, vs, ws))


def fmt_rate(x):
    """A rate in configuration-steps per second, 3 significant digits."""
    if x is None or not math.isfinite(x):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def fmt_ratio(x):
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g}x" if x < 100 else f"{x:,.0f}x"


def fmt_s(x):
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3g} s" if x >= 1e-3 else f"{x * 1e6:.3g} us"
