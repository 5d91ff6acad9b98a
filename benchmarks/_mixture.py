"""Gaussian-mixture input: the exact engine against the paper's Monte Carlo.

Three measurements, all with a tanh teacher (no closed form: the exact engine
integrates numerically) on the K = 10 mixture of the sweeps' defaults:

* :func:`throughput`: Algorithm 1 runs. stedyn's exact dynamics (the
  compiled :class:`benchmarks._throughput.Kernel`) against the Proper-STE
  paper's method, a fresh 10,000-sample Monte-Carlo average at every step
  (:func:`benchmarks._baselines.mixture_mc_runner`, jitted JAX, one
  configuration per call), interleaved. The Monte Carlo runs fewer steps;
  its per-step rate is what is compared (its cost per step does not depend
  on the step: same sample size, same work).
* :func:`per_evaluation`: one ``coarse_grad`` evaluation,
  :mod:`benchmarks.mixture_vs_mc` (kept as its own script).
* :func:`equal_accuracy`: the Monte-Carlo sample size that would match the
  exact engine's accuracy, and the time that would take. The error of the
  exact float32 engine is measured against the exact float64 engine; the
  Monte-Carlo error (float32, N = 10,000) as the RMS over independent
  samples, against the same float64 reference. Monte-Carlo error falls like
  ``1/sqrt(N)``, so equal accuracy needs ``N_eq = N (e_mc / e_exact)^2``
  samples; its time is extrapolated linearly in N from timings at N and 4N
  (measured, interleaved; the JSON has both), since ``N_eq`` is far beyond
  what fits in memory.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _baselines as bl
from ._common import interleaved, median, problem, spread, timed
from ._throughput import LR, M, N, R, Cell, Kernel, _reps_within, mixture_data, skipped_row


def throughput(stes, batches, steps, *, teacher="tanh", dtype="float32", mc_steps=5, samples=10_000, reps=3, budget_s=60.0,
               skip_over_s=math.inf, log=print):
    """Exact mixture Algorithm 1 against per-step Monte Carlo (see module docstring)."""
    import jax
    import jax.numpy as jnp

    import stedyn as sd

    rows = []
    rate_seen = {}
    for ste in stes:
        mc_rate = None
        for B in batches:
            for T in steps:
                cell = Cell(teacher, ste, dtype, B, T, data="mixture")
                est = None if ste not in rate_seen else cell.work / rate_seen[ste]
                if est is not None and est > skip_over_s:
                    rows.append(skipped_row(cell, est, skip_over_s, log))
                    continue
                kern = Kernel(cell)
                fns = {"stedyn": kern.run}
                if mc_rate is None:
                    dt = jnp.dtype(dtype)
                    v0, w0, vs, ws = (jnp.asarray(x[0]) for x in problem(1, M, N, np.dtype(dtype)))
                    mc = bl.mixture_mc_runner(sd.Teacher(vs, ws, teacher), mixture_data(dt), ste=ste, r=R, lr=LR,
                                              steps=mc_steps, samples=samples, dtype=dt)
                    key = jax.random.key(0)
                    t0 = timed(lambda: mc(v0, w0, key))  # compile + first run
                    fns["mc"] = lambda: mc(v0, w0, key)
                n_reps = _reps_within(reps, budget_s, kern.first_run_s)
                times = interleaved(fns, n_reps)
                rate = cell.work / median(times["stedyn"])
                rate_seen[ste] = max(rate_seen.get(ste, 0.0), rate)
                if "mc" in times:
                    mc_rate = dict(rate=mc_steps / median(times["mc"]), measured_B=1, measured_T=mc_steps,
                                   samples=samples, run_s=median(times["mc"]), spread=spread(times["mc"]),
                                   compile_and_first_s=t0)
                row = dataclasses.asdict(cell)
                row.update(record_every=cell.stride, compile_s=kern.compile_s, reps=n_reps, run_s=median(times["stedyn"]),
                           run_spread=spread(times["stedyn"]), rate=rate, pure_dtype=kern.pure_dtype(),
                           baselines={"mc_per_step": dict(mc_rate, extrapolated=True)},
                           speedup_vs_mc_per_step=rate / mc_rate["rate"])
                rows.append(row)
                log(f"  mixture/{teacher}/{ste}/{dtype} B={B} T={T}: {rate:.3g} config-steps/s (compile {kern.compile_s:.1f} s); "
                    f"MC {mc_rate['rate']:.3g} steps/s; x{row['speedup_vs_mc_per_step']:.3g}")
    return rows


def per_evaluation(stes, *, teacher="tanh", dtype="float32", reps=7, inner=3, samples=10_000, chain=50, log=print):
    """:mod:`benchmarks.mixture_vs_mc` for one teacher (generic geometry)."""
    from . import mixture_vs_mc

    argv = ["--teachers", teacher, "--stes", ",".join(stes), "--geometry", "generic", "--reps", str(reps),
            "--inner", str(inner), "--samples", str(samples), "--chain", str(chain)]
    if dtype == "float64":
        argv.append("--x64")
    return mixture_vs_mc.main(argv)


def equal_accuracy(stes, *, teacher="tanh", seeds=10, samples=10_000, reps=5, log=print):
    """Monte-Carlo sample size and time at the exact float32 engine's accuracy."""
    import jax
    import jax.numpy as jnp

    import stedyn as sd

    rows = []
    f32, f64 = jnp.float32, jnp.float64
    v0, w0, vs, ws = (x[0] for x in problem(1, M, N, np.float64, seed=3))
    mix64 = mixture_data(f64)
    mix32 = mixture_data(f32)
    for ste in stes:
        def exact(dt, mix):
            T = sd.Teacher(jnp.asarray(vs, dt), jnp.asarray(ws, dt), teacher)
            f = jax.jit(lambda v, w: sd.coarse_grad(v, w, T, mix, ste=ste, r=R))
            return f, (jnp.asarray(v0, dt), jnp.asarray(w0, dt))

        f64_fn, a64 = exact(f64, mix64)
        ref = np.concatenate([np.asarray(x, np.float64) for x in f64_fn(*a64)])
        scale = np.linalg.norm(ref)
        f32_fn, a32 = exact(f32, mix32)
        got = np.concatenate([np.asarray(x, np.float64) for x in f32_fn(*a32)])
        e_exact = float(np.linalg.norm(got - ref) / scale)
        T32 = sd.Teacher(jnp.asarray(vs, f32), jnp.asarray(ws, f32), teacher)

        def mc_fn(n):
            @jax.jit
            def f(v, w, key):
                Z = sd.sample_mixture(mix32, n, key=key, dtype=f32)
                return sd.coarse_grad(v, w, T32, sd.Empirical(Z), ste=ste, r=R)
            return f

        mc = mc_fn(samples)
        errs = []
        for s in range(seeds):
            g = np.concatenate([np.asarray(x, np.float64) for x in mc(*a32, jax.random.key(100 + s))])
            errs.append(np.linalg.norm(g - ref) / scale)
        e_mc = float(np.sqrt(np.mean(np.square(errs))))
        mc4 = mc_fn(4 * samples)
        key = jax.random.key(1)
        for f, a in ((f32_fn, a32), (mc4, a32 + (key,))):
            timed(lambda: f(*a))
        times = interleaved({"exact": lambda: f32_fn(*a32), "mc": lambda: mc(*a32, key),
                             "mc4": lambda: mc4(*a32, key)}, reps)
        t_exact, t_mc, t_mc4 = (median(times[k]) for k in ("exact", "mc", "mc4"))
        # The floor keeps an exact engine that happens to hit the float64
        # value to every printed digit from giving an infinite N_eq.
        e_floor = max(e_exact, float(np.finfo(np.float32).eps))
        n_eq = samples * (e_mc / e_floor) ** 2
        t_eq = t_mc * n_eq / samples
        row = dict(
            teacher=teacher, ste=ste, samples=samples, seeds=seeds, exact_rel_error_f32=e_exact,
            mc_rel_error_rms=e_mc, mc_rel_errors=[float(e) for e in errs], n_equal_accuracy=n_eq,
            exact_s=t_exact, mc_s=t_mc, mc_4x_s=t_mc4, mc_time_ratio_4x=t_mc4 / t_mc,
            speedup_at_mc_samples=t_mc / t_exact, mc_s_at_equal_accuracy=t_eq,
            speedup_at_equal_accuracy=t_eq / t_exact, extrapolated=True,
        )
        rows.append(row)
        log(f"  equal accuracy {teacher}/{ste}: exact f32 err {e_exact:.2g}, MC({samples}) err {e_mc:.2g} -> "
            f"N_eq {n_eq:.3g}; exact {t_exact * 1e3:.3g} ms, MC {t_mc * 1e3:.3g} ms (4N: x{t_mc4 / t_mc:.2f}); "
            f"x{row['speedup_at_mc_samples']:.3g} at N, x{row['speedup_at_equal_accuracy']:.3g} at equal accuracy")
    return rows
