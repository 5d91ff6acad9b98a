"""Throughput of batched Algorithm 1 against the baselines, measured side by side.

A *kernel* is exactly the program :func:`stedyn.run` compiles for a batch of
configurations: ``jax.jit(jax.vmap(stedyn._dynamics.simulate))`` with ``v0``,
``w0``, ``v*`` and ``w*`` batched and ``sigma``, ``lr``, ``r`` shared (traced
scalars, as ``sd.run`` passes them); a batch of 1 is the unbatched program,
as ``sd.run`` compiles for unbatched inputs. Building it by hand rather than
through ``sd.run`` separates the compile time (``lower().compile()``, timed
on its own) from the run time (warmed calls); :func:`sd_run_overhead`
measures what ``sd.run`` adds on top (validation, dispatch, outcome names).

A *cell* is one (teacher, STE, dtype, B, T) point. Its stedyn run, the
hand-vectorized NumPy batch and the per-configuration loop
(:mod:`benchmarks._baselines`) run interleaved, median of the repetitions.
Baselines too slow for the cell's full size run on fewer steps (NumPy batch:
same B) or fewer configurations and steps (loop), and their per
configuration-step rate is used; each result says what was measured
(``measured_B``, ``measured_T``) and whether the rate is ``extrapolated``.
:func:`linearity` checks that those rates are indeed constant.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from . import _baselines as bl
from ._common import interleaved, median, problem, spread, timed

M, N = 20, 25
SIGMA, R, LR = 1.0, 1.0, 0.05


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid (Gaussian data unless ``data == "mixture"``)."""

    teacher: str
    ste: str
    dtype: str
    batch: int
    steps: int
    data: str = "gaussian"
    record_every: int | None = None

    def __post_init__(self):
        # sd.run's default stride (about 200 records per run), made explicit so
        # that equal cells compare equal whichever way they were written.
        if self.record_every is None:
            object.__setattr__(self, "record_every", max(1, self.steps // 200))

    @property
    def stride(self):
        return self.record_every

    @property
    def work(self):
        return self.batch * self.steps

    def key(self):
        return (self.data, self.teacher, self.ste, self.dtype)


def _jnp_dtype(name):
    import jax.numpy as jnp

    return jnp.dtype(name)


def mixture_data(dtype, K=10, seed=0):
    """The Proper-STE Sec. 4 mixture of the sweeps' defaults: K means ~ N(0, 1), sigma 1."""
    import jax.numpy as jnp

    import stedyn as sd

    rng = np.random.default_rng(seed + 1000)
    return sd.GaussianMixture(jnp.asarray(rng.normal(size=(K, M, N)), dtype), jnp.asarray(1.0, dtype))


class Kernel:
    """The compiled stedyn program of one cell, and its inputs."""

    def __init__(self, cell, seed=0):
        import jax
        import jax.numpy as jnp

        import stedyn as sd
        from stedyn import _dynamics as dyn
        from stedyn._ste import resolve_ste

        self.cell = cell
        dt = _jnp_dtype(cell.dtype)
        self.np_args = problem(cell.batch, M, N, np.dtype(cell.dtype), seed)
        arrays = [jnp.asarray(x) for x in self.np_args]
        if cell.batch == 1:
            arrays = [x[0] for x in arrays]
        data = sd.Gaussian(jnp.asarray(SIGMA, dt)) if cell.data == "gaussian" else mixture_data(dt)
        ste = resolve_ste(cell.ste)
        tol = dyn.Tolerances()

        def one(v0, w0, vs, ws, data, lr, r):
            return dyn.simulate(
                v0, w0, sd.Teacher(vs, ws, cell.teacher), data, lr, r, ste=ste, rule="coarse",
                optimizer=None, steps=cell.steps, record_every=cell.stride, tol=tol,
            )

        fn = one if cell.batch == 1 else jax.vmap(one, in_axes=(0, 0, 0, 0, None, None, None))
        self.args = tuple(arrays) + (data, jnp.asarray(LR, dt), jnp.asarray(R, dt))
        t0 = time.perf_counter()
        self.compiled = jax.jit(fn).lower(*self.args).compile()
        self.compile_s = time.perf_counter() - t0
        self.first_run_s = timed(self.run)

    def run(self):
        return self.compiled(*self.args)

    def memory(self):
        """Bytes of the compiled program (XLA's buffer assignment), or None."""
        try:
            ma = self.compiled.memory_analysis()
        except Exception:  # pragma: no cover - backend without the analysis
            return None
        if ma is None:  # pragma: no cover
            return None
        d = {
            k: int(getattr(ma, k + "_size_in_bytes"))
            for k in ("argument", "output", "temp", "alias", "generated_code")
        }
        d["peak"] = d["argument"] + d["output"] + d["temp"] - d["alias"]
        return d

    def pure_dtype(self):
        """Whether a float32 program has no float64 operation in it (x64 mode on)."""
        if self.cell.dtype != "float32":
            return True
        return "f64[" not in self.compiled.as_text()


def _reps_within(reps, budget_s, one_run_s):
    """``reps``, or fewer (at least 1) so that they take about ``budget_s``."""
    if not math.isfinite(budget_s):
        return reps
    return max(1, min(reps, int(budget_s / max(one_run_s, 1e-9))))


def _baseline_fns(cell, np_args, *, batch_cap, loop_B, loop_T):
    """NumPy batch and loop closures for a cell, with what each measures."""
    v0, w0, vs, ws = np_args
    k = cell.stride
    T_b = cell.steps if cell.work <= batch_cap else max(min(cell.steps, 10), batch_cap // cell.batch)
    B_l, T_l = min(cell.batch, loop_B), min(cell.steps, loop_T)
    kw = dict(teacher=cell.teacher, ste=cell.ste, sigma=SIGMA, r=R, lr=LR, record_every=k)
    fns = {
        "numpy_batch": lambda: bl.run_batch(v0, w0, vs, ws, steps=T_b, **kw),
        "numpy_loop": lambda: bl.run_loop(v0[:B_l], w0[:B_l], vs[:B_l], ws[:B_l], steps=T_l, **kw),
    }
    meta = {
        "numpy_batch": dict(measured_B=cell.batch, measured_T=T_b, extrapolated=T_b != cell.steps),
        "numpy_loop": dict(measured_B=B_l, measured_T=T_l, extrapolated=(B_l, T_l) != (cell.batch, cell.steps)),
    }
    return fns, meta


def measure_cell(cell, *, reps=3, budget_s=60.0, baselines=True, batch_cap=2_000_000, loop_B=10, loop_T=100,
                 kernel=None, seed=0):
    """Compile and time one cell, with its baselines interleaved.

    Args:
      cell: the :class:`Cell`.
      reps: interleaved repetitions (fewer if one stedyn run is long:
        ``reps * run <= budget_s``, at least 1).
      baselines: time the NumPy batch and loop too (Gaussian relu/binary only).
      batch_cap: most configuration-steps the NumPy batch runs per call
        (fewer steps beyond it, extrapolated per configuration-step).
      loop_B, loop_T: most configurations and steps the loop runs per call.
      kernel: an already compiled :class:`Kernel` of this cell.

    Returns:
      (row dict, kernel).
    """
    kern = kernel or Kernel(cell, seed)
    n_reps = _reps_within(reps, budget_s, kern.first_run_s)
    fns = {"stedyn": kern.run}
    meta = {}
    with_bl = baselines and cell.data == "gaussian" and cell.teacher in bl.TEACHERS and cell.ste in bl.STES
    if with_bl:
        bfns, meta = _baseline_fns(cell, kern.np_args, batch_cap=batch_cap, loop_B=loop_B, loop_T=loop_T)
        v0, w0, vs, ws = (x[:2] for x in kern.np_args)  # warm-up: first-call imports, caches
        bl.run_batch(v0, w0, vs, ws, teacher=cell.teacher, ste=cell.ste, steps=2)
        bl.run_loop(v0, w0, vs, ws, teacher=cell.teacher, ste=cell.ste, steps=2)
        fns.update(bfns)
    times = interleaved(fns, n_reps)
    row = dataclasses.asdict(cell)
    row["record_every"] = cell.stride
    row.update(
        compile_s=kern.compile_s, reps=n_reps, run_s=median(times["stedyn"]), run_spread=spread(times["stedyn"]),
        rate=cell.work / median(times["stedyn"]), pure_dtype=kern.pure_dtype(),
    )
    base = {}
    for name, m in meta.items():
        t = median(times[name])
        base[name] = dict(m, run_s=t, rate=m["measured_B"] * m["measured_T"] / t, spread=spread(times[name]))
        row["speedup_vs_" + name] = row["rate"] / base[name]["rate"]
    row["baselines"] = base
    return row, kern


def linearity(cell, *, reps=3, loop_B=10, loop_T=100, batch_T=(100, None)):
    """Check that the baselines' per configuration-step rates do not depend on size.

    The loop at ``(B, T)``, ``(2B, T)`` and ``(B, 2T)``; the NumPy batch at the
    cell's B with ``batch_T[0]`` steps and with the full ``cell.steps``. All
    interleaved. The spread of the rates (``max/min - 1``) says how far a
    linear extrapolation can be off.
    """
    v0, w0, vs, ws = problem(max(cell.batch, 2 * loop_B), M, N, np.dtype(cell.dtype))
    kw = dict(teacher=cell.teacher, ste=cell.ste, sigma=SIGMA, r=R, lr=LR, record_every=cell.stride)
    loop_sizes = [(loop_B, loop_T), (2 * loop_B, loop_T), (loop_B, 2 * loop_T)]
    fns = {}
    for B_, T_ in loop_sizes:
        fns[f"loop B={B_} T={T_}"] = (lambda B_=B_, T_=T_: bl.run_loop(v0[:B_], w0[:B_], vs[:B_], ws[:B_], steps=T_, **kw))
    B = cell.batch
    bT = [t or cell.steps for t in batch_T]
    for T_ in bT:
        fns[f"batch B={B} T={T_}"] = (lambda T_=T_: bl.run_batch(v0[:B], w0[:B], vs[:B], ws[:B], steps=T_, **kw))
    times = interleaved(fns, reps)
    work = {f"loop B={b} T={t}": b * t for b, t in loop_sizes}
    work.update({f"batch B={B} T={t}": B * t for t in bT})
    rates = {k: work[k] / median(v) for k, v in times.items()}
    loop_r = [rates[f"loop B={b} T={t}"] for b, t in loop_sizes]
    batch_r = [rates[f"batch B={B} T={t}"] for t in bT]
    return dict(
        rates=rates,
        loop_spread=max(loop_r) / min(loop_r) - 1.0,
        batch_spread=max(batch_r) / min(batch_r) - 1.0,
    )


def sd_run_overhead(cell, kernel, reps=3):
    """``sd.run`` end to end against its compiled kernel, same inputs, interleaved."""
    import jax.numpy as jnp

    import stedyn as sd

    v0, w0, vs, ws = (jnp.asarray(x) for x in kernel.np_args)
    if cell.batch == 1:
        v0, w0, vs, ws = v0[0], w0[0], vs[0], ws[0]
    dt = _jnp_dtype(cell.dtype)
    T = sd.Teacher(vs, ws, cell.teacher)
    data = sd.Gaussian(jnp.asarray(SIGMA, dt))

    def via_run():
        return sd.run(v0, w0, T, data, ste=cell.ste, r=R, lr=LR, steps=cell.steps, record_every=cell.stride).v

    t0 = time.perf_counter()
    via_run()  # sd.run's own compile (its cache is separate from the kernel's)
    first = time.perf_counter() - t0
    times = interleaved({"sd.run": via_run, "kernel": kernel.run}, reps)
    return dict(
        sd_run_s=median(times["sd.run"]), kernel_s=median(times["kernel"]),
        overhead=median(times["sd.run"]) / median(times["kernel"]) - 1.0, sd_run_first_call_s=first,
    )


def estimate_s(rates, cell):
    """Seconds a cell's stedyn run should take from the rates seen so far (None if unknown)."""
    known = rates.get(cell.key())
    return None if not known else cell.work / known


def run_grid(cells, *, reps, budget_s, log, skip_over_s=math.inf, **kw):
    """Measure the cells in order; skip those estimated to take over ``skip_over_s``.

    Returns the rows; a skipped cell's row has ``skipped`` with the estimate.
    """
    rows, rates, kernels = [], {}, {}
    for cell in cells:
        est = estimate_s(rates, cell)
        if est is not None and est > skip_over_s:
            rows.append(skipped_row(cell, est, skip_over_s, log))
            continue
        row, kern = measure_cell(cell, reps=reps, budget_s=budget_s, **kw)
        rates[cell.key()] = max(rates.get(cell.key(), 0.0), row["rate"])
        kernels[cell] = kern
        rows.append(row)
        log(f"  {_label(cell)}: {row['rate']:.3g} config-steps/s (compile {row['compile_s']:.1f} s, run {row['run_s']:.3g} s)"
            + "".join(f", {k[len('speedup_vs_'):]} x{v:.3g}" for k, v in row.items() if k.startswith("speedup_vs_")))
    return rows, kernels


def skipped_row(cell, est, skip_over_s, log):
    """The row of a cell left out because one run would take ``est`` seconds."""
    row = dataclasses.asdict(cell)
    row.update(record_every=cell.stride, skipped=f"estimated {est:,.0f} s for one run (over {skip_over_s:,.0f} s)")
    log(f"  skip {_label(cell)}: {row['skipped']}")
    return row


def _label(cell):
    return f"{cell.data}/{cell.teacher}/{cell.ste}/{cell.dtype} B={cell.batch} T={cell.steps}"
