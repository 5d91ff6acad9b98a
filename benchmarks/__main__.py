"""``python -m benchmarks``: the whole benchmark suite, one command.

Writes ``OUT/results.json`` (every number, with what was measured and how)
and ``OUT/results.md`` (the tables). Grids:

* ``--quick``: a smoke run of seconds (tiny batches; the numbers mean
  nothing, the code paths all run).
* default: the target configuration (ReLU teacher, clipped-ReLU STE, m = 20,
  n = 25, B = 10^4, T = 10^3) for real against both baselines, every
  teacher x STE at that size, batch sizes 1 ... 10^5 and T = 10^4 for the
  target pair, memory against batch size and stride, the mixture engine
  against Monte Carlo; about 10-15 minutes on 2 CPU cores.
* ``--full``: the issue's whole grid (every teacher x STE x dtype x B in
  1 ... 10^5 x T in {10^3, 10^4}, mixture B up to 10^5); cells whose one run is
  estimated (from the rates already measured) to take over ``--skip-over``
  seconds are listed as skipped with the estimate.

See ``benchmarks/README.md`` for the methodology.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time


def _grids(mode, dtypes):
    from ._throughput import Cell

    gauss_pairs = [(t, s) for t in ("relu", "binary") for s in ("identity", "relu", "crelu")]
    if mode == "quick":
        # Every code path on tiny sizes, with the programs that compile
        # fastest (identity STE; ReLU teacher on the mixture): seconds.
        target = dict(pair=("relu", "identity"), batch=64, steps=40)
        mem = dict(batches=(16, 64), strides=(1, 8))
        mixture = dict(teacher="relu", stes=("crelu",), batches=(), steps=(),
                       per_eval=dict(reps=2, inner=1, samples=2000, chain=3), accuracy=dict(seeds=2, samples=2000, reps=2))
        return dict(target=target, grid=[], mem=mem, mixture=mixture, reps=2, loop=(4, 10), budget_s=5.0,
                    skip_over=math.inf, batch_cap=200_000, linearity_T=(10, 20), sd_run=False)
    target = dict(pair=("relu", "crelu"), batch=10_000, steps=1_000)
    if mode == "default":
        grid = []
        for d in dtypes:
            grid += [Cell(t, s, d, 10_000, 1_000) for t, s in gauss_pairs]
            grid += [Cell("relu", "crelu", d, b, 1_000) for b in (1, 10, 100, 1_000, 100_000)]
            grid += [Cell("relu", "crelu", d, 1_000, 10_000)]
        mem = dict(batches=(100, 1_000, 10_000, 100_000), strides=(1, 5, 50, 1_000))
        mixture = dict(teacher="tanh", stes=("identity", "relu", "crelu"), batches=(1, 10), steps=(100,),
                       per_eval=dict(reps=7, inner=3, samples=10_000), accuracy=dict(seeds=10, samples=10_000, reps=5))
        return dict(target=target, grid=grid, mem=mem, mixture=mixture, reps=3, loop=(10, 100), budget_s=30.0,
                    skip_over=math.inf, batch_cap=2_000_000, linearity_T=(100, 300), sd_run=True)
    grid = [Cell(t, s, d, b, T) for d in dtypes for t, s in gauss_pairs for T in (1_000, 10_000)
            for b in (1, 10, 100, 1_000, 10_000, 100_000)]
    mem = dict(batches=(100, 1_000, 10_000, 100_000), strides=(1, 2, 5, 20, 50, 200, 1_000))
    mixture = dict(teacher="tanh", stes=("identity", "relu", "crelu"), batches=(1, 10, 100, 1_000, 10_000, 100_000),
                   steps=(1_000, 10_000),
                   per_eval=dict(reps=9, inner=3, samples=10_000), accuracy=dict(seeds=20, samples=10_000, reps=7))
    return dict(target=target, grid=grid, mem=mem, mixture=mixture, reps=3, loop=(10, 100), budget_s=30.0,
                skip_over=120.0, batch_cap=2_000_000, linearity_T=(100, 300), sd_run=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke run of seconds (numbers not meaningful)")
    size.add_argument("--full", action="store_true", help="the issue's whole grid (long; see --skip-over)")
    p.add_argument("--out", default="benchmarks/out", help="output directory (results.json, results.md)")
    p.add_argument("--dtypes", default=None,
                   help="comma-separated float32,float64 (default: both; --quick: float32)")
    p.add_argument("--x64", action="store_true", help="float64 only (shorthand for --dtypes float64)")
    p.add_argument("--skip-over", type=float, default=None,
                   help="skip grid cells whose one run is estimated to take longer than this many seconds")
    p.add_argument("--no-mixture", action="store_true", help="leave out the Gaussian-mixture benchmarks")
    args = p.parse_args(argv)
    mode = "quick" if args.quick else ("full" if args.full else "default")
    if args.x64:
        dtypes = ["float64"]
    elif args.dtypes:
        dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    else:
        dtypes = ["float32"] if mode == "quick" else ["float32", "float64"]
    for d in dtypes:
        if d not in ("float32", "float64"):
            p.error(f"--dtypes: {d!r} is not float32 or float64")

    import jax

    # float64 needs x64 mode; float32 programs are built from float32 inputs
    # and checked to contain no float64 operation (``pure_dtype``).
    if "float64" in dtypes:
        jax.config.update("jax_enable_x64", True)

    from . import _memory, _mixture, _report
    from ._common import machine_info
    from ._throughput import Cell, linearity, measure_cell, run_grid, sd_run_overhead

    g = _grids(mode, dtypes)
    if args.skip_over is not None:
        g["skip_over"] = args.skip_over
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    res = dict(
        meta=dict(mode=mode, dtypes=dtypes, started=started, loop_B=g["loop"][0], loop_T=g["loop"][1],
                  argv=list(sys.argv[1:] if argv is None else argv)),
        machine=machine_info(), target=[], grid=[], memory=[], mixture={}, notes=[],
    )
    from . import _baselines

    res["meta"]["erfc_in_numpy_baselines"] = _baselines.ERFC_SOURCE
    log(f"mode {mode}, dtypes {dtypes}, machine {res['machine']['cpu']} x{res['machine']['cores']}")

    kernels = {}
    # 1. The target configuration, both baselines interleaved; the NumPy batch
    # at full size (measured, not extrapolated), the loop extrapolated from
    # small runs whose linearity is measured.
    for d in dtypes:
        cell = Cell(*g["target"]["pair"], d, g["target"]["batch"], g["target"]["steps"])
        log(f"target {d}: B={cell.batch} T={cell.steps}")
        row, kern = measure_cell(cell, reps=g["reps"], budget_s=math.inf, batch_cap=math.inf,
                                 loop_B=g["loop"][0], loop_T=g["loop"][1])
        kernels[cell] = kern
        log(f"  stedyn {row['rate']:.3g}/s, NumPy batch x{row['speedup_vs_numpy_batch']:.3g}, "
            f"loop x{row['speedup_vs_numpy_loop']:.3g} (compile {row['compile_s']:.1f} s)")
        lin = linearity(cell, reps=g["reps"], loop_B=g["loop"][0], loop_T=g["loop"][1], batch_T=g["linearity_T"])
        log(f"  linearity: loop spread {lin['loop_spread']:.1%}, batch spread {lin['batch_spread']:.1%}")
        over = sd_run_overhead(cell, kern, reps=g["reps"]) if g["sd_run"] else None
        if over:
            log(f"  sd.run overhead {over['overhead']:+.1%}")
        res["target"].append(dict(row=row, linearity=lin, sd_run=over))

    # 2. The grid (reusing compiled kernels where a cell repeats).
    log(f"grid: {len(g['grid'])} cells")
    todo = [c for c in g["grid"] if c not in kernels]
    rows, new = run_grid(todo, reps=g["reps"], budget_s=g["budget_s"], log=log, skip_over_s=g["skip_over"],
                         batch_cap=g["batch_cap"], loop_B=g["loop"][0], loop_T=g["loop"][1])
    kernels.update(new)
    by_cell = {Cell(r["teacher"], r["ste"], r["dtype"], r["batch"], r["steps"], r["data"]): r for r in rows}
    for t in res["target"]:
        r = t["row"]
        by_cell[Cell(r["teacher"], r["ste"], r["dtype"], r["batch"], r["steps"], r["data"])] = r
    res["grid"] = [by_cell[Cell(c.teacher, c.ste, c.dtype, c.batch, c.steps, c.data)] for c in g["grid"]
                   if Cell(c.teacher, c.ste, c.dtype, c.batch, c.steps, c.data) in by_cell]

    # 3. Memory against batch size and record stride.
    for d in dtypes:
        base = Cell(*g["target"]["pair"], d, g["target"]["batch"], g["target"]["steps"])
        log(f"memory {d}")
        mm = _memory.memory_scan(base, g["mem"]["batches"], g["mem"]["strides"], kernels=kernels, log=log)
        res["memory"].append(mm)
        for t in res["target"]:
            if t["row"]["dtype"] == d and mm.get("available"):
                t["memory_per_config"] = mm["bytes_per_config_beyond_trajectory"]
    kernels.clear()  # free the compiled programs and their inputs

    # 4. Mixture: exact dynamics and evaluations against Monte Carlo.
    mx = g["mixture"]
    if not args.no_mixture:
        if mx["batches"]:
            log("mixture throughput (exact vs per-step Monte Carlo), float32")
            res["mixture"]["throughput"] = _mixture.throughput(
                mx["stes"], mx["batches"], mx["steps"], teacher=mx["teacher"], reps=g["reps"], budget_s=g["budget_s"],
                skip_over_s=g["skip_over"], log=log)
        res["mixture"]["per_evaluation"] = []
        # --quick leaves this one out (three more compilations); the
        # equal-accuracy step below times exact against Monte Carlo too.
        for d in (dtypes if mode == "full" else dtypes[:1]) if mode != "quick" else ():
            log(f"mixture per evaluation ({d})")
            res["mixture"]["per_evaluation"].append(_mixture.per_evaluation(mx["stes"], teacher=mx["teacher"], dtype=d, **mx["per_eval"]))
        if "float64" in dtypes or mode == "quick":
            if "float64" not in dtypes:
                jax.config.update("jax_enable_x64", True)
            log("mixture at equal accuracy")
            res["mixture"]["equal_accuracy"] = _mixture.equal_accuracy(mx["stes"], teacher=mx["teacher"], log=log, **mx["accuracy"])

    # 5. Targets (issue #5) at the float32 target configuration.
    tf = [t for t in res["target"] if t["row"]["dtype"] == "float32"]
    res["meta"]["target_pair"] = list(g["target"]["pair"])
    if tf and mode != "quick":
        r = tf[0]["row"]
        mm = next((x for x in res["memory"] if x.get("dtype") == "float32" and x.get("available")), None)
        res["targets"] = {
            ">= 10x NumPy batch": dict(met=bool(r["speedup_vs_numpy_batch"] >= 10),
                                       value=f"{r['speedup_vs_numpy_batch']:.3g}x"),
            ">= 300x Python loop": dict(met=bool(r["speedup_vs_numpy_loop"] >= 300),
                                        value=f"{r['speedup_vs_numpy_loop']:.3g}x"),
        }
        if mm:
            res["targets"]["< 1 KB per config beyond trajectory, linear in B"] = dict(
                met=bool(mm["bytes_per_config_beyond_trajectory"] < 1024 and mm["fit_batch"]["max_rel_residual"] < 0.05),
                value=f"{mm['bytes_per_config_beyond_trajectory']:,.0f} B, fit residual {mm['fit_batch']['max_rel_residual']:.1%}")
    res["notes"] = [
        "Measured: every stedyn number; the NumPy batch at the target configuration. Extrapolated (per "
        "configuration-step rate, linearity measured): the Python loop everywhere, the NumPy batch where a "
        "cell shows `(T=...)`, the Monte Carlo of the mixture runs (a few steps), and the Monte-Carlo time at "
        "equal accuracy.",
        "The float32 programs run with JAX's x64 mode on when float64 is also measured; `pure_dtype` in the JSON "
        "checks that they contain no float64 operation.",
        f"NumPy baselines use {_baselines.ERFC_SOURCE} for erfc.",
        "The machine is shared: timings move with the load of other processes; only ratios measured "
        "side by side (interleaved) are comparable.",
        "GPU figures: still missing (no GPU lent in this session).",
    ]
    if mode == "quick":
        res["notes"].insert(0, "--quick: a smoke run on tiny sizes; the numbers are not meaningful.")
    res["meta"]["elapsed_s"] = time.perf_counter() - t_start
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write(_report.render(res))
    log(f"wrote {args.out}/results.json and results.md")
    return res


if __name__ == "__main__":
    main()
