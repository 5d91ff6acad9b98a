"""The Markdown report of a suite run (``results.md``), from its JSON results."""

from __future__ import annotations

from ._common import fmt_rate, fmt_ratio, fmt_s


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _measured(b):
    if not b:
        return "-"
    how = f"B={b['measured_B']:,}, T={b['measured_T']:,}"
    return how + (", per config-step, extrapolated" if b.get("extrapolated") else ", measured")


def machine_line(machine):
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['platform']}; jax {machine['jax']}"
        f" (jaxlib {machine.get('jaxlib', '?')}), numpy {machine['numpy']}, scipy {machine.get('scipy')};"
        f" device {machine['device']}; load average at start {machine.get('load_average')}"
    )


def headline_table(res):
    """The target-configuration table (also what the top-level README shows)."""
    rows = []
    for t in res["target"]:
        c = t["row"]
        b = c["baselines"]
        rows.append([
            c["dtype"], fmt_rate(c["rate"]), fmt_rate(b["numpy_batch"]["rate"]), fmt_ratio(c["speedup_vs_numpy_batch"]),
            fmt_rate(b["numpy_loop"]["rate"]), fmt_ratio(c["speedup_vs_numpy_loop"]), fmt_s(c["compile_s"]),
            f"{t['memory_per_config']:,.0f} B" if t.get("memory_per_config") is not None else "-",
        ])
    return _table(
        ["dtype", "stedyn (config-steps/s)", "NumPy batch", "speed-up", "Python loop", "speed-up", "compile",
         "memory/config beyond trajectory"],
        rows,
    )


def render(res):
    m = res["meta"]
    tgt = res["target"][0]["row"] if res["target"] else None
    lines = [
        "# stedyn benchmarks",
        "",
        f"Mode `{m['mode']}`, {m['started']}, {m['elapsed_s']:.0f} s in all. Machine: {machine_line(res['machine'])}.",
        "",
        "Throughput is in configuration-steps per second (runs x steps / wall time) of batched Algorithm 1 "
        "(`sd.run`'s compiled program), median of interleaved repetitions; compile time is apart "
        "(`lower().compile()`). Baselines use the same formulas (`benchmarks/_baselines.py`). "
        + (f"Target configuration: {tgt['teacher']} teacher, {tgt['ste']} STE, m = 20, n = 25, B = {tgt['batch']:,}, "
           f"T = {tgt['steps']:,}, record stride {tgt['record_every']}." if tgt else ""),
        "",
        "## Headline (target configuration)",
        "",
        headline_table(res) if res["target"] else "(not run)",
        "",
    ]
    for t in res["target"]:
        c = t["row"]
        b = c["baselines"]
        lines.append(
            f"- {c['dtype']}: stedyn {fmt_s(c['run_s'])} per run ({c['reps']} reps, spread {c['run_spread']:.0%}); "
            f"NumPy batch {_measured(b['numpy_batch'])} ({fmt_s(b['numpy_batch']['run_s'])} per run); "
            f"loop {_measured(b['numpy_loop'])}. Linearity of the extrapolated baselines: loop rates within "
            f"{t['linearity']['loop_spread']:.0%} at (B, T), (2B, T), (B, 2T); NumPy batch within "
            f"{t['linearity']['batch_spread']:.0%} across T."
            + (f" `sd.run` end to end adds {t['sd_run']['overhead']:+.1%} to the kernel "
               f"({fmt_s(t['sd_run']['sd_run_s'])} vs {fmt_s(t['sd_run']['kernel_s'])})." if t.get("sd_run") else "")
        )
    if res.get("targets"):
        lines += ["", "Targets (float32, target configuration): " + "; ".join(
            f"{k}: {'met' if v['met'] else 'NOT met'} ({v['value']})" for k, v in res["targets"].items())]
    lines += ["", "## Throughput grid", ""]
    grid_rows = []
    for r in res["grid"]:
        if r.get("skipped"):
            grid_rows.append([r["data"], r["teacher"], r["ste"], r["dtype"], f"{r['batch']:,}", f"{r['steps']:,}",
                              "skipped: " + r["skipped"], "-", "-", "-", "-"])
            continue
        b = r.get("baselines", {})
        grid_rows.append([
            r["data"], r["teacher"], r["ste"], r["dtype"], f"{r['batch']:,}", f"{r['steps']:,}", fmt_rate(r["rate"]),
            fmt_s(r["compile_s"]),
            fmt_ratio(r.get("speedup_vs_numpy_batch")) + (" (T={:,})".format(b["numpy_batch"]["measured_T"])
                                                          if b.get("numpy_batch", {}).get("extrapolated") else ""),
            fmt_ratio(r.get("speedup_vs_numpy_loop")),
            "" if r.get("pure_dtype", True) else "float64 ops in a float32 program!",
        ])
    lines.append(_table(["data", "teacher", "STE", "dtype", "B", "T", "stedyn", "compile", "vs NumPy batch",
                         "vs loop", "note"], grid_rows))
    lines += [
        "",
        "`vs NumPy batch` with `(T=...)`: the batch baseline ran that many steps at the same B and its per "
        "config-step rate is compared; `vs loop`: the loop ran at most "
        f"{m['loop_B']} configurations x {m['loop_T']} steps, per config-step rate (linear, see above).",
    ]
    if res.get("memory"):
        lines += ["", "## Memory", "",
                  "Peak bytes of the compiled program (`memory_analysis()`: arguments + outputs + temporaries), "
                  "fitted as `c + B (q + t R)` (R records per run)."]
        mem_rows = []
        for mm in res["memory"]:
            if not mm.get("available"):
                continue
            mem_rows.append([
                mm["dtype"], f"{mm['fit_batch']['bytes_per_config']:,.0f}", f"{mm['fit_batch']['max_rel_residual']:.1%}",
                f"{mm['bytes_per_record_per_config']:.1f} (ideal {mm['bytes_per_record_ideal']})",
                f"{mm['bytes_per_config_beyond_trajectory']:,.0f}", f"{mm['temp_bytes_per_config_beyond_trajectory']:,.0f}",
                f"{mm['input_bytes_per_config']}",
            ])
        lines.append(_table(["dtype", f"bytes/config at R = {res['memory'][0]['fit_batch']['records']}",
                             "linear fit max residual", "bytes per record per config (t)",
                             "bytes/config beyond trajectory (q)", "of which scratch", "inputs/config"], mem_rows))
        lines += ["", "Rows (B, stride, records, peak MB, temp MB, trajectory MB):", ""]
        for mm in res["memory"]:
            lines.append(f"- {mm.get('dtype')}: " + "; ".join(
                f"B={r['batch']:,} k={r['stride']} R={r['records']}: {r.get('peak', 0) / 1e6:.3g}/{r.get('temp', 0) / 1e6:.3g}/"
                f"{r['trajectory'] / 1e6:.3g}" for r in mm["rows"]))
    mix = res.get("mixture") or {}
    if mix.get("throughput"):
        lines += ["", "## Mixture: exact dynamics vs per-step Monte Carlo", "",
                  "K = 10 components (teacher in the table); Monte Carlo: a fresh 10,000-sample average per step, jitted, "
                  "one configuration per call, per-step rate over a few steps."]
        rows = []
        for r in mix["throughput"]:
            if r.get("skipped"):
                rows.append([r["teacher"] + " / " + r["ste"], r["dtype"], f"{r['batch']:,}", f"{r['steps']:,}", "skipped: " + r["skipped"], "-", "-", "-"])
                continue
            b = r["baselines"]["mc_per_step"]
            rows.append([r["teacher"] + " / " + r["ste"], r["dtype"], f"{r['batch']:,}", f"{r['steps']:,}", fmt_rate(r["rate"]), fmt_s(r["compile_s"]),
                         fmt_rate(b["rate"]), fmt_ratio(r["speedup_vs_mc_per_step"])])
        lines.append(_table(["teacher / STE", "dtype", "B", "T", "exact (config-steps/s)", "compile", "MC (steps/s)", "speed-up"], rows))
    if mix.get("per_evaluation"):
        lines += ["", "One `coarse_grad` evaluation (`benchmarks/mixture_vs_mc.py`):", ""]
        rows = [[r["teacher"], r["ste"], pe["config"]["dtype"], f"{r['exact_ms']:.3g} ms", f"{r['mc_ms']:.3g} ms",
                 f"{r['mc_draw_ms']:.3g} ms", fmt_ratio(r["ratio"]), fmt_ratio(r["ratio_draw"]),
                 f"{r['exact_chain_ms']:.3g} ms" if "exact_chain_ms" in r else "-",
                 f"{r['mc_chain_ms']:.3g} ms" if "mc_chain_ms" in r else "-",
                 fmt_ratio(r["ratio_chain"]) if "ratio_chain" in r else "-", fmt_s(r["compile_exact_s"])]
                for pe in mix["per_evaluation"] for r in pe["rows"]]
        lines.append(_table(["teacher", "STE", "dtype", "exact", "MC (fixed sample)", "MC + draw", "ratio", "ratio + draw",
                             "exact in a program", "MC in a program", "ratio in a program", "compile exact"], rows))
    if mix.get("equal_accuracy"):
        lines += ["", "At equal accuracy (exact float32 error vs float64; Monte-Carlo RMS error over independent samples; "
                  "`N_eq = N (e_mc / e_exact)^2`, time extrapolated linearly in N):", ""]
        rows = [[r["teacher"] + " / " + r["ste"], f"{r['exact_rel_error_f32']:.2g}", f"{r['samples']:,}", f"{r['mc_rel_error_rms']:.2g}",
                 f"{r['n_equal_accuracy']:.3g}", f"{r['mc_time_ratio_4x']:.2f}", fmt_s(r["exact_s"]), fmt_s(r["mc_s"]),
                 fmt_ratio(r["speedup_at_mc_samples"]), f"{r['speedup_at_equal_accuracy']:.3g}x"] for r in mix["equal_accuracy"]]
        lines.append(_table(["teacher / STE", "exact f32 rel. error", "MC N", "MC rel. error", "N_eq", "MC time 4N / N",
                             "exact", "MC at N", "speed-up at N", "speed-up at equal accuracy (extrapolated)"], rows))
    lines += ["", "## Notes", ""]
    lines += [f"- {n}" for n in res.get("notes", [])]
    return "\n".join(lines) + "\n"
