"""Peak memory of the compiled batched program against batch size and record stride.

XLA plans every buffer of a compiled program ahead of time;
``compiled.memory_analysis()`` reports the argument, output and temporary
(scratch) bytes of that plan, and their sum minus aliased bytes is the
program's peak device memory (on CPU, the host memory it allocates while
running, beyond the Python process and the compiled code). The model

    peak(B, R) = c + B (q + t R)

(B configurations, R records per run) is fitted in two slices: against B at
a fixed stride (slope ``q + t R``) and against R at a fixed B (slope
``t B``). ``t`` is the measured cost of one record per configuration (the
trajectory: 7 metrics, ``7 * itemsize`` bytes if stored once) and ``q`` the
bytes per configuration *beyond* the recorded trajectory: inputs (``v0, w0,
v*, w*``: ``2 (m + n)`` numbers), outputs (final ``v, w``, metrics, outcome)
and the loop's scratch.
"""

from __future__ import annotations

import numpy as np

from ._throughput import M, N, Kernel


def _fit(x, y):
    """Least-squares ``y = a + b x``; ``(a, b, max relative residual)``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    b, a = np.polyfit(x, y, 1)
    resid = np.max(np.abs(a + b * x - y) / y)
    return float(a), float(b), float(resid)


def records(steps, stride):
    """Number of records of a run (``0, k, 2k, ...`` and the last step)."""
    return steps // stride + 1 + (steps % stride != 0)


def memory_scan(base_cell, batches, strides, *, kernels=None, log=print):
    """Memory of the compiled program over ``batches`` (at ``base_cell``'s stride) and ``strides`` (at its B).

    Args:
      base_cell: a :class:`benchmarks._throughput.Cell` (teacher, STE, dtype,
        steps, and the B / stride the two slices are taken at).
      batches, strides: the values of each slice.
      kernels: ``{cell: Kernel}`` already compiled (reused, not recompiled).

    Returns:
      dict with the rows, both fits and the derived per-configuration bytes.
    """
    import dataclasses

    kernels = kernels if kernels is not None else {}
    itemsize = np.dtype(base_cell.dtype).itemsize
    rows, seen = [], {}

    def mem(cell):
        if cell in seen:
            return seen[cell]
        kern = kernels.get(cell)
        if kern is None:
            kern = Kernel(cell)
            kernels[cell] = kern
        m = kern.memory()
        R = records(cell.steps, cell.stride)
        row = dict(batch=cell.batch, stride=cell.stride, records=R, **(m or {}))
        row["trajectory"] = 7 * R * itemsize * cell.batch
        rows.append(row)
        seen[cell] = row
        log(f"  memory B={cell.batch} stride={cell.stride} (R={R}): peak {row.get('peak', float('nan')) / 1e6:.3g} MB")
        return row

    by_b = [mem(dataclasses.replace(base_cell, batch=b, record_every=base_cell.stride)) for b in batches]
    by_r = [mem(dataclasses.replace(base_cell, record_every=k)) for k in strides]
    if any("peak" not in r for r in by_b + by_r):  # pragma: no cover - no memory analysis
        return dict(rows=rows, available=False)
    cB, slopeB, residB = _fit([r["batch"] for r in by_b], [r["peak"] for r in by_b])
    cR, slopeR, residR = _fit([r["records"] for r in by_r], [r["peak"] for r in by_r])
    t = slopeR / base_cell.batch
    R0 = records(base_cell.steps, base_cell.stride)
    q = slopeB - t * R0
    # The same split for the scratch (temp) bytes alone, the part XLA adds
    # beyond inputs and outputs.
    _, tempB, _ = _fit([r["batch"] for r in by_b], [r["temp"] for r in by_b])
    _, tempR, _ = _fit([r["records"] for r in by_r], [r["temp"] for r in by_r])
    return dict(
        available=True,
        dtype=base_cell.dtype, teacher=base_cell.teacher, ste=base_cell.ste, steps=base_cell.steps,
        rows=rows,
        fit_batch=dict(intercept=cB, bytes_per_config=slopeB, max_rel_residual=residB, stride=base_cell.stride, records=R0),
        fit_records=dict(intercept=cR, bytes_per_record_all_configs=slopeR, max_rel_residual=residR, batch=base_cell.batch),
        bytes_per_record_per_config=t,
        bytes_per_record_ideal=7 * itemsize,
        bytes_per_config_beyond_trajectory=q,
        temp_bytes_per_config_beyond_trajectory=tempB - (tempR / base_cell.batch) * R0,
        input_bytes_per_config=2 * (M + N) * itemsize,
    )
