"""The ``stedyn`` command line: sweep, run, plot, merge, config, demo.

User mistakes (missing file, bad key, bad value) end with one line on stderr
and exit status 2; a traceback means a bug in stedyn.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys

_EPILOG = "Configuration reference: `stedyn config` prints the default sweep with comments."


def _common(p):
    p.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")


def _parser():
    ap = argparse.ArgumentParser(
        prog="stedyn",
        description="Population dynamics of activation-quantized networks trained with straight-through estimators.",
        epilog=_EPILOG,
    )
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("sweep", help="run a parameter sweep and draw its heatmap", epilog=_EPILOG)
    p.add_argument("config", nargs="?", help="TOML sweep file (default: the built-in Proper-STE sweep)")
    p.add_argument("--out", help="output directory (default: results/<name>)")
    p.add_argument("--shard", metavar="i/N", help="run only every N-th chunk, starting at i (join with `stedyn merge`)")
    p.add_argument("--chunk-size", type=int, metavar="K", help="configurations per chunk (overrides execution.chunk_size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() first (multi-host jobs)")
    _common(p)

    p = sub.add_parser("run", help="simulate the few configurations of a file and plot their trajectories")
    p.add_argument("config", help="TOML file (same format as sweep; at most 64 configurations)")
    p.add_argument("--out", help="output directory (default: results/<name>)")
    _common(p)

    p = sub.add_parser("plot", help="redraw the figures of a results directory")
    p.add_argument("dir", help="a directory written by `stedyn sweep`, `run` or `merge`")
    p.add_argument("--x", default="", help="heatmap x axis (a swept axis)")
    p.add_argument("--y", default="", help="heatmap y axis (a swept axis)")
    p.add_argument("--panels", default=None, help="one panel per value of this axis ('' for one panel)")
    p.add_argument("--outcomes", nargs="*", default=None, help="outcome rows to draw (default: those that occur)")
    p.add_argument("--max-trajectories", type=int, default=None, help="runs drawn in trajectory plots")

    p = sub.add_parser("merge", help="join sharded sweep directories into OUT and write the results")
    p.add_argument("out", help="the directory to complete")
    p.add_argument("shards", nargs="*", help="other shard directories to copy chunks from")

    sub.add_parser("config", help="print the default sweep configuration (a template to edit)")

    p = sub.add_parser("demo", help="exact population gradients against Monte Carlo, as a table")
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="options of the demo (see `stedyn demo --help`)")
    return ap


def _override(cfg, section, key, value):
    from ._config import SweepConfig

    resolved = copy.deepcopy(cfg.resolved)
    resolved[section][key] = value
    return dataclasses.replace(cfg, resolved=resolved) if isinstance(cfg, SweepConfig) else cfg


def _load(path):
    from ._config import default_config, load_config

    return default_config() if path is None else load_config(path)


def _outdir(args, cfg):
    return args.out or os.path.join("results", cfg.resolved["name"])


def _report(res, out):
    import numpy as np

    from ._dynamics import OUTCOMES

    n = len(res["outcome_code"])
    counts = np.bincount(res["outcome_code"], minlength=len(OUTCOMES))
    parts = ", ".join(f"{o} {c}" for o, c in zip(OUTCOMES, counts) if c)
    print(f"{n} runs: {parts}")
    print(f"results in {out}/ (results.npz, summary.csv, fractions.csv, figures)")


def _sweep(args):
    import jax

    if args.distributed:  # pragma: no cover - needs a multi-host job
        jax.distributed.initialize()
    from ._config import ConfigError
    from ._sweep import sweep

    cfg = _load(args.config)
    if args.x64:
        cfg = _override(cfg, "execution", "dtype", "float64")
    if args.chunk_size is not None:
        if args.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be >= 1; got {args.chunk_size}")
        cfg = _override(cfg, "execution", "chunk_size", args.chunk_size)
    out = _outdir(args, cfg)
    res = sweep(cfg, out, shard=args.shard, progress=not args.no_progress)
    if res is None:
        print(f"chunks written to {out}/chunks; when every shard has finished, run: stedyn merge {out} [other shard dirs]")
    else:
        _report(res, out)


def _run(args):
    import numpy as np

    from ._config import ConfigError
    from ._dynamics import OUTCOMES
    from ._sweep import sweep

    cfg = _load(args.config)
    if cfg.size > 64:
        raise ConfigError(f"{args.config} has {cfg.size} configurations; `stedyn run` takes at most 64 (use `stedyn sweep`)")
    if args.x64:
        cfg = _override(cfg, "execution", "dtype", "float64")
    cfg = _override(cfg, "output", "trajectories", True)
    out = _outdir(args, cfg)
    res = sweep(cfg, out, progress=False)
    for i in range(len(res["outcome_code"])):
        desc = ", ".join(f"{a}={res['axis_' + a][res['index_' + a][i]]}" for a in res["axis_names"])
        print(
            f"[{i}] {desc or 'single run'}: {OUTCOMES[res['outcome_code'][i]]}; loss {res['final_loss'][i]:.6g}, "
            f"|w| {res['final_w_norm'][i]:.6g}, angle {res['final_angle'][i]:.3g} rad"
        )
    print(f"trajectories and figures in {out}/")
    return np.asarray(res["outcome_code"])


def _plot(args):
    from ._config import ConfigError
    from ._plot import plot_results
    from ._sweep import load_results

    if not os.path.isdir(args.dir):
        raise ConfigError(f"no such directory: {args.dir}")
    res = load_results(args.dir)
    written = plot_results(
        res, args.dir, x=args.x, y=args.y, panels=args.panels, outcomes=args.outcomes, max_n=args.max_trajectories
    )
    for p in written:
        print(p)


def _merge(args):
    from ._sweep import merge

    res = merge(args.out, *args.shards)
    _report(res, args.out)


def _config(args):
    from ._config import DEFAULT_CONFIG, SCHEMA

    print(DEFAULT_CONFIG)
    print("# Every key, its default and what it accepts:")
    for section, keys in SCHEMA.items():
        print(f"# [{section}]")
        for key, (_, default, _, allowed) in keys.items():
            print(f"#   {key} = {default!r:<10} # {allowed}")
    print("# [axes] name = list | {linspace=[a,b], num=k} | {geomspace=[a,b], num=k} | {range=k} | {random=[a,b], num=k, log=false}")
    from ._config import AXES

    print(f"#   axis names: {', '.join(AXES)}")


def main(argv=None):
    args = _parser().parse_args(argv)
    if getattr(args, "x64", False):
        import jax

        jax.config.update("jax_enable_x64", True)
    if args.cmd == "demo":
        from ._demo import main as demo

        return demo(args.demo_args)
    from ._config import ConfigError

    handlers = {"sweep": _sweep, "run": _run, "plot": _plot, "merge": _merge, "config": _config}
    try:
        handlers[args.cmd](args)
    except (ConfigError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"stedyn {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad values caught by the library's validation
        print(f"stedyn {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stedyn {args.cmd}: interrupted; finished chunks are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
