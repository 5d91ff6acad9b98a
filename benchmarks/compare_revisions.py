"""Time the same batched Algorithm 1 program at several revisions of stedyn, interleaved.

Each revision is a checkout (e.g. ``git worktree add /tmp/before 2f15eb7``);
one worker process per checkout imports stedyn from it, compiles the cells'
programs (``jit(vmap(stedyn._dynamics.simulate))``, as in
:mod:`benchmarks._throughput`) and then runs them on request. The driver asks
the workers in turn (rev A, rev B, rev A, ...; one at a time, so they never
compete for the CPU), and reports the median per revision and cell and the
ratios to the first revision.

    python -m benchmarks.compare_revisions --rev before=/tmp/before --rev after=. \\
        --cells relu/crelu,relu/relu --batch 10000 --steps 1000 --reps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_WORKER = r'''
import json, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
import jax
if cfg["dtype"] == "float64":
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import stedyn as sd
from stedyn import _dynamics as dyn
from stedyn._ste import resolve_ste
dt = jnp.dtype(cfg["dtype"])
B, T, m, n = cfg["batch"], cfg["steps"], 20, 25
rng = np.random.default_rng(0)
ws = rng.normal(size=(B, n)); ws /= np.linalg.norm(ws, axis=1, keepdims=True)
w0 = rng.normal(size=(B, n)); w0 /= np.linalg.norm(w0, axis=1, keepdims=True)
arrs = [jnp.asarray(x, dt) for x in (rng.normal(size=(B, m)), w0, rng.normal(size=(B, m)), ws)]
progs = []
for teacher, ste in cfg["cells"]:
    def one(v0, w0, vs, ws, sig, lr, r, teacher=teacher, ste=ste):
        return dyn.simulate(v0, w0, sd.Teacher(vs, ws, teacher), sd.Gaussian(sig), lr, r, ste=resolve_ste(ste),
                            rule="coarse", optimizer=None, steps=T, record_every=max(1, T // 200), tol=dyn.Tolerances())
    args = arrs + [jnp.asarray(1.0, dt), jnp.asarray(0.05, dt), jnp.asarray(1.0, dt)]
    t0 = time.perf_counter()
    c = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None, None, None))).lower(*args).compile()
    ct = time.perf_counter() - t0
    jax.block_until_ready(c(*args))
    progs.append((c, args, ct))
print(json.dumps({"compile_s": [p[2] for p in progs]}), flush=True)
for line in sys.stdin:
    i = int(line)
    c, args, _ = progs[i]
    t0 = time.perf_counter()
    jax.block_until_ready(c(*args))
    print(json.dumps({"run_s": time.perf_counter() - t0}), flush=True)
'''


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_revisions", description=__doc__.splitlines()[0])
    p.add_argument("--rev", action="append", required=True, help="NAME=PATH of a checkout (first one: the reference)")
    p.add_argument("--cells", default="relu/crelu", help="comma-separated teacher/ste pairs")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=1_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    revs = [r.split("=", 1) for r in args.rev]
    cells = [c.split("/") for c in args.cells.split(",")]
    cfg = json.dumps(dict(dtype=args.dtype, batch=args.batch, steps=args.steps, cells=cells))
    workers = {}
    for name, path in revs:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, cfg], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env, cwd=os.path.abspath(path))
        workers[name] = proc
    compile_s = {name: json.loads(w.stdout.readline())["compile_s"] for name, w in workers.items()}
    times = {(name, i): [] for name, _ in revs for i in range(len(cells))}
    for rep in range(args.reps):
        order = [n for n, _ in revs]
        order = order[rep % len(order):] + order[: rep % len(order)]
        for i in range(len(cells)):
            for name in order:
                w = workers[name]
                w.stdin.write(f"{i}\n")
                w.stdin.flush()
                times[(name, i)].append(json.loads(w.stdout.readline())["run_s"])
    for w in workers.values():
        w.stdin.close()
        w.wait()
    ref = revs[0][0]
    out = dict(config=dict(dtype=args.dtype, batch=args.batch, steps=args.steps, reps=args.reps,
                           revisions={n: os.path.abspath(pth) for n, pth in revs}), rows=[])
    for i, (teacher, ste) in enumerate(cells):
        for name, _ in revs:
            med = statistics.median(times[(name, i)])
            out["rows"].append(dict(
                teacher=teacher, ste=ste, revision=name, run_s=med, rate=args.batch * args.steps / med,
                compile_s=compile_s[name][i], speedup_vs_first=statistics.median(times[(ref, i)]) / med,
                runs=times[(name, i)]))
    print(f"# {args.dtype}, B={args.batch}, T={args.steps}, median of {args.reps} interleaved runs")
    print(f"{'teacher/ste':16s} {'revision':10s} {'rate':>10s} {'compile_s':>9s} {'vs ' + ref:>10s}")
    for r in out["rows"]:
        print(f"{r['teacher'] + '/' + r['ste']:16s} {r['revision']:10s} {r['rate']:10.3g} {r['compile_s']:9.1f} "
              f"{r['speedup_vs_first']:10.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
