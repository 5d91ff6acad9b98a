"""Exact Gaussian-mixture ``coarse_grad`` against the 10,000-sample Monte Carlo.

The Proper-STE paper (Sec. 4, Fig. 1) estimates every expectation from 10,000
mixture samples. This benchmark times, in one process and in float32 by
default, for m = 20, n = 25, K = 10:

* ``exact``: ``stedyn.coarse_grad(v, w, teacher, GaussianMixture(...))``;
* ``mc``: ``stedyn.coarse_grad(v, w, teacher, Empirical(Z))`` on a fixed
  sample ``Z`` of 10,000 draws (the cheapest Monte-Carlo estimate: the sample
  is drawn once, outside the timing);
* ``mc+draw``: the same with a fresh sample drawn inside the timed function
  (the paper's method when every step resamples).

Each is timed two ways:

* *per call*: one jitted call, ``block_until_ready``;
* *in a program*: ``--chain`` evaluations chained inside one jitted
  ``lax.fori_loop`` (each evaluation's ``(v, w)`` is the previous one's minus
  a tiny multiple of its gradient, so none can be hoisted or skipped), time
  divided by ``--chain``. This is how the engine runs in ``sd.run`` and the
  experiments (a ``lax.scan`` of steps), and it leaves out the host round
  trip of a call. On the 2-core VM this project runs on, that round trip is
  not a fixed few microseconds: a call whose kernels XLA splits over the
  intra-op thread pool pays tens of microseconds of thread wake-up (measured:
  an elementwise kernel over 9,600 points costs 6 us per evaluation inside a
  loop and 50-90 us as a call of its own, 20 us pinned to one core), which is
  a large part of a ~100 us exact call and 2% of a ~2 ms Monte-Carlo one.

Both sides are jitted and warmed up; every timing ends in
``block_until_ready``. Contenders are interleaved (exact, mc, exact, mc, ...)
so that load from other processes hits both alike, and the reported time is
the median over repetitions. Compile time (first call) is reported
separately. The ratio ``mc / exact`` is the speed-up; the issue asks for
>= 20.

Run as ``python -m benchmarks.mixture_vs_mc [--x64] [--reps N] ...``;
:func:`main` returns the results as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time


def _time_interleaved(fns, reps, inner):
    """Median seconds per call of each function, calls interleaved."""
    import jax

    samples = {k: [] for k in fns}
    for _ in range(reps):
        for name, (f, args) in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                jax.block_until_ready(f(*args))
            samples[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}, samples


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mixture_vs_mc", description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=20)
    p.add_argument("--n", type=int, default=25)
    p.add_argument("--K", type=int, default=10, help="mixture components")
    p.add_argument("--samples", type=int, default=10_000, help="Monte-Carlo sample size")
    p.add_argument("--teachers", default="tanh,relu,sin,binary,linear")
    p.add_argument("--stes", default="identity,relu,crelu")
    p.add_argument("--geometry", default="generic,aligned", help="generic: random w; aligned: w at 1e-3 rad from w*")
    p.add_argument("--reps", type=int, default=15, help="interleaved repetitions (median reported)")
    p.add_argument("--inner", type=int, default=10, help="calls per repetition")
    p.add_argument("--chain", type=int, default=50, help="evaluations chained in one program (0: per call only)")
    p.add_argument("--x64", action="store_true", help="float64 instead of float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import stedyn as sd

    dt = jnp.float64 if args.x64 else jnp.float32
    rng = np.random.default_rng(args.seed)
    m, n, K = args.m, args.n, args.K
    mix = sd.GaussianMixture(jnp.asarray(rng.normal(size=(K, m, n)), dt), jnp.asarray(1.0, dt))
    v = jnp.asarray(rng.normal(size=m) / math.sqrt(m), dt)
    ws = rng.normal(size=n)
    ws = ws / np.linalg.norm(ws)
    vs = jnp.asarray(rng.normal(size=m), dt)
    Z = sd.sample_mixture(mix, args.samples, key=jax.random.key(args.seed), dtype=dt)
    r = jnp.asarray(1.0, dt)
    geoms = {}
    for g in args.geometry.split(","):
        if g == "generic":
            geoms[g] = jnp.asarray(rng.normal(size=n), dt)
        elif g == "aligned":
            perp = rng.normal(size=n)
            perp -= perp @ ws * ws
            perp /= np.linalg.norm(perp)
            geoms[g] = jnp.asarray(np.cos(1e-3) * ws + np.sin(1e-3) * perp, dt)
        else:
            raise SystemExit(f"unknown geometry {g!r}")

    results = {
        "config": dict(m=m, n=n, K=K, samples=args.samples, dtype=str(jnp.dtype(dt)), reps=args.reps, inner=args.inner),
        "device": str(jax.devices()[0]),
        "rows": [],
    }
    print(f"# exact vs {args.samples}-sample Monte Carlo coarse_grad, m={m} n={n} K={K}, {jnp.dtype(dt)}, "
          f"{jax.devices()[0]}; median of {args.reps} x {args.inner} interleaved calls")
    print(f"{'teacher':8s} {'ste':9s} {'geometry':8s} {'exact_ms':>9s} {'mc_ms':>8s} {'mc+draw_ms':>10s} "
          f"{'ratio':>6s} {'ratio+draw':>10s} {'compile_exact_s':>15s} {'compile_mc_s':>12s}"
          + (f" {'exact_prog_ms':>13s} {'mc_prog_ms':>10s} {'ratio_prog':>10s}" if args.chain else ""))
    for act in args.teachers.split(","):
        T = sd.Teacher(vs, jnp.asarray(ws, dt), act)
        for ste in args.stes.split(","):
            exact = jax.jit(lambda v, w, T, mix, ste=ste: sd.coarse_grad(v, w, T, mix, ste=ste, r=r))
            mc = jax.jit(lambda v, w, T, Z, ste=ste: sd.coarse_grad(v, w, T, sd.Empirical(Z), ste=ste, r=r))

            def mc_draw(v, w, T, key, ste=ste):
                Zk = sd.sample_mixture(mix, args.samples, key=key, dtype=dt)
                return sd.coarse_grad(v, w, T, sd.Empirical(Zk), ste=ste, r=r)

            mc_draw = jax.jit(mc_draw)

            def chained(data, ste=ste):
                def f(v, w, T, data):
                    def body(i, vw):
                        v_, w_ = vw
                        est = data if isinstance(data, sd.GaussianMixture) else sd.Empirical(data)
                        dv, dw = sd.coarse_grad(v_, w_, T, est, ste=ste, r=r)
                        return v_ - 1e-6 * dv, w_ - 1e-6 * dw
                    return jax.lax.fori_loop(0, args.chain, body, (v, w))
                return jax.jit(f)

            exact_chain, mc_chain = (chained(mix), chained(Z)) if args.chain else (None, None)
            key = jax.random.key(1)
            for gname, w in geoms.items():
                t0 = time.perf_counter()
                jax.block_until_ready(exact(v, w, T, mix))
                c_exact = time.perf_counter() - t0
                t0 = time.perf_counter()
                jax.block_until_ready(mc(v, w, T, Z))
                c_mc = time.perf_counter() - t0
                jax.block_until_ready(mc_draw(v, w, T, key))
                med, _ = _time_interleaved(
                    {"exact": (exact, (v, w, T, mix)), "mc": (mc, (v, w, T, Z)), "mc_draw": (mc_draw, (v, w, T, key))},
                    args.reps,
                    args.inner,
                )
                row = dict(
                    teacher=act, ste=ste, geometry=gname,
                    exact_ms=1e3 * med["exact"], mc_ms=1e3 * med["mc"], mc_draw_ms=1e3 * med["mc_draw"],
                    ratio=med["mc"] / med["exact"], ratio_draw=med["mc_draw"] / med["exact"],
                    compile_exact_s=c_exact, compile_mc_s=c_mc,
                )
                if args.chain:
                    jax.block_until_ready(exact_chain(v, w, T, mix))
                    jax.block_until_ready(mc_chain(v, w, T, Z))
                    medc, _ = _time_interleaved(
                        {"exact": (exact_chain, (v, w, T, mix)), "mc": (mc_chain, (v, w, T, Z))},
                        args.reps, max(1, args.inner // 5),
                    )
                    row.update(chain=args.chain, exact_chain_ms=1e3 * medc["exact"] / args.chain,
                               mc_chain_ms=1e3 * medc["mc"] / args.chain, ratio_chain=medc["mc"] / medc["exact"])
                results["rows"].append(row)
                print(f"{act:8s} {ste:9s} {gname:8s} {row['exact_ms']:9.3f} {row['mc_ms']:8.2f} {row['mc_draw_ms']:10.2f} "
                      f"{row['ratio']:6.1f} {row['ratio_draw']:10.1f} {c_exact:15.2f} {c_mc:12.2f}"
                      + (f" {row['exact_chain_ms']:13.3f} {row['mc_chain_ms']:10.2f} {row['ratio_chain']:10.1f}"
                         if args.chain else ""), flush=True)
    ratios = [r_["ratio"] for r_ in results["rows"]]
    results["min_ratio"] = min(ratios)
    results["median_ratio"] = statistics.median(ratios)
    print(f"# ratio mc/exact per call: min {min(ratios):.1f}, median {statistics.median(ratios):.1f} (target >= 20)")
    if args.chain:
        rc = [r_["ratio_chain"] for r_ in results["rows"]]
        results["min_ratio_chain"] = min(rc)
        results["median_ratio_chain"] = statistics.median(rc)
        below = [f"{r_['teacher']}/{r_['ste']}/{r_['geometry']}" for r_ in results["rows"] if r_["ratio_chain"] < 20]
        results["below_20_chain"] = below
        print(f"# ratio mc/exact in a program: min {min(rc):.1f}, median {statistics.median(rc):.1f}; "
              f"below 20: {', '.join(below) or 'none'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
