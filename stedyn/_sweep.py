"""Parameter sweeps: thousands of :func:`stedyn._dynamics.simulate` runs.

The grid is the product of the configuration's axes. Configurations that share
the static axes (``m``, ``n``, ``ste``, ``activation``, ``rule``, ``bits``) form a group
with one compiled program; a group is cut into equal chunks (the last one
padded) so memory is bounded by the chunk size, and each chunk is sharded
across the visible devices. Every configuration draws its teacher and start
from ``fold_in(key(seed), axis seed)`` alone, so its result does not depend on
the chunk size, the device count, or which shard ran it.

Finished chunks are written atomically to ``OUT/chunks/`` as they complete;
rerunning the same command skips them (resume), and ``--shard i/N`` runs every
N-th chunk so cluster job arrays can split a sweep; :func:`merge` joins the
slices into the file an unsharded run writes.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import json
import os
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _dynamics
from ._config import AXES, STATIC_AXES, ConfigError, SweepConfig, default_config, load_config, parse_config
from ._dynamics import METRICS, OUTCOMES, Tolerances, simulate
from ._quantize import Quantizer
from ._model import Gaussian, Teacher
from ._ste import resolve_ste
from ._theory import w_at_angle

DYNAMIC = ("angle", "w_norm", "v_scale", "r", "sigma", "lr", "rho")
RESULTS = "results.npz"
_FORMAT = 1


def _as_config(config):
    if config is None:
        return default_config()
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


# ---------------------------------------------------------------------------
# The plan: groups and chunks


@dataclasses.dataclass(frozen=True)
class Chunk:
    group: int
    index: int
    configs: np.ndarray  # global configuration indices, ascending

    @property
    def name(self):
        return f"g{self.group:04d}_c{self.index:06d}"


def _grid_index(cfg):
    """Per-axis index arrays of every configuration, C order over the axes."""
    if not cfg.axes:
        return {}
    idx = np.unravel_index(np.arange(cfg.size, dtype=np.int64), cfg.shape)
    return {name: i for (name, _), i in zip(cfg.axes, idx)}


def _values(cfg, gidx, name, configs):
    """The value of a parameter for the given configurations (axis or fixed)."""
    section, key = AXES[name]
    for ax, vals in cfg.axes:
        if ax == name:
            return np.asarray(vals)[gidx[name][configs]]
    return np.full(len(configs), cfg.value(section, key))


def _bytes_per_config(cfg, m, n):
    r = cfg.resolved
    steps = r["train"]["steps"]
    k = _record_every(cfg)
    n_rec = steps // k + 2
    item = 8 if r["execution"]["dtype"] == "float64" else 4
    # records, final state and (generously) the step's intermediates
    return item * (n_rec * (len(METRICS) + 4) + 64 * (m + n) + 8192)


def _record_every(cfg):
    k = cfg.resolved["train"]["record_every"]
    return k if k > 0 else max(1, cfg.resolved["train"]["steps"] // 100)


def plan(cfg: SweepConfig):
    """Groups and chunks of a sweep; deterministic given the configuration."""
    gidx = _grid_index(cfg)
    static = [a for a, _ in cfg.axes if a in STATIC_AXES]
    if static:
        keys = np.stack([gidx[a] for a in static], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        uniq, inverse = np.zeros((1, 0), np.int64), np.zeros(cfg.size, np.int64)
    groups, chunks = [], []
    user_chunk = cfg.resolved["execution"]["chunk_size"]
    budget = cfg.resolved["execution"]["memory_mb"] * 2**20
    for g, row in enumerate(uniq):
        configs = np.nonzero(inverse == g)[0]
        statics = {a: dict(cfg.axes)[a][row[j]] for j, a in enumerate(static)}
        m = statics.get("m", cfg.resolved["model"]["m"])
        n = statics.get("n", cfg.resolved["model"]["n"])
        size = user_chunk or int(max(1, min(16384, budget // _bytes_per_config(cfg, m, n))))
        size = min(size, len(configs))
        groups.append(statics)
        for c, start in enumerate(range(0, len(configs), size)):
            chunks.append(Chunk(g, c, configs[start : start + size]))
    return groups, chunks


# ---------------------------------------------------------------------------
# One group's compiled program


def _group_static(cfg, statics):
    r = cfg.resolved
    pick = lambda name: statics.get(name, cfg.value(*AXES[name]))  # noqa: E731
    opt = r["train"]["optimizer"]
    return dict(
        m=int(pick("m")),
        n=int(pick("n")),
        ste=pick("ste"),
        activation=pick("activation"),
        rule=pick("rule"),
        bits=int(pick("bits")),
        optimizer=opt,
        momentum=r["train"]["momentum"],
        steps=r["train"]["steps"],
        record_every=_record_every(cfg),
        tol=Tolerances(**r["tolerances"]),
        dtype=r["execution"]["dtype"],
        seed=r["seed"],
        t_v_scale=r["teacher"]["v_scale"],
        t_w_norm=r["teacher"]["w_norm"],
        data_kind=r["data"]["kind"],
        components=int(pick("components")),
        mean_scale=r["data"]["mean_scale"],
        kind=r["model"]["kind"],
        hidden=int(pick("hidden")),
        depth=int(pick("depth")),
    )


def _optimizer_factory(name, momentum):
    import optax

    if name == "none":
        return None
    if name == "sgd":
        return optax.sgd
    if name == "momentum":
        return functools.partial(optax.sgd, momentum=momentum)
    return optax.adam


def draw_problem(seed, p, st):
    """Teacher, start and data of one configuration (traceable).

    ``v* ~ v_scale N(0, I_m)``, ``w* = |w*| u`` with ``u`` uniform on the
    sphere, ``w0`` at the configured angle and norm in a random direction
    orthogonal to ``w*``, ``v0 ~ init.v_scale N(0, I_m)``; for a mixture,
    ``K`` equally weighted components with means ``mean_scale N(0, 1)`` per
    entry (Proper-STE Sec. 4) and std ``sigma``. The keys come from the base
    seed folded with the configuration's seed alone.
    """
    dtype = jnp.dtype(st["dtype"])
    key = jax.random.fold_in(jax.random.key(st["seed"]), seed)
    k_vs, k_ws, k_v0, k_perp, k_means = jax.random.split(key, 5)
    m, n = st["m"], st["n"]
    vs = st["t_v_scale"] * jax.random.normal(k_vs, (m,), dtype)
    u = jax.random.normal(k_ws, (n,), dtype)
    ws = st["t_w_norm"] * u / jnp.linalg.norm(u)
    perp = jax.random.normal(k_perp, (n,), dtype)
    w0 = w_at_angle(ws, p["angle"], p["w_norm"], perp)
    v0 = p["v_scale"] * jax.random.normal(k_v0, (m,), dtype)
    teacher = Teacher(vs, ws, st["activation"])
    if st["data_kind"] == "mixture":
        from ._model import GaussianMixture

        means = st["mean_scale"] * jax.random.normal(k_means, (st["components"], m, n), dtype)
        return v0, w0, teacher, GaussianMixture(means, p["sigma"])
    return v0, w0, teacher, Gaussian(p["sigma"])


def draw_model_problem(seed, p, st):
    """Model and start of one ReLU-model configuration (traceable).

    ``relu_network``: K = ``model.hidden`` teacher units ``|w*| u_j`` with
    ``u_j`` uniform on the sphere in ``R^n``, output weights 1; student unit
    ``j`` at ``init.angle`` to teacher unit ``j`` with norm ``init.w_norm``
    (random perpendicular direction). ``relu_neuron``: ``w* = |w*| u``,
    ``w0`` at the angle and norm, balanced ``v_k = |w0|`` and balanced teacher
    (Lee-Sim-Ye), ``model.depth`` layers. Input std ``sigma``.
    """
    from ._models import ReLUNetwork, ReLUNeuron

    dtype = jnp.dtype(st["dtype"])
    key = jax.random.fold_in(jax.random.key(st["seed"]), seed)
    k_ws, k_perp = jax.random.split(key, 2)
    n = st["n"]
    K = st["hidden"] if st["kind"] == "relu_network" else 1
    u = jax.random.normal(k_ws, (K, n), dtype)
    ws = st["t_w_norm"] * u / jnp.linalg.norm(u, axis=-1, keepdims=True)
    perp = jax.random.normal(k_perp, (K, n), dtype)
    w0 = jax.vmap(lambda a, b: w_at_angle(a, p["angle"], p["w_norm"], b))(ws, perp)
    if st["kind"] == "relu_network":
        return ReLUNetwork(ws, sigma=p["sigma"]), {"w": w0}
    model = ReLUNeuron(ws[0], depth=st["depth"], sigma=p["sigma"])
    return model, model.balanced(w0[0])


# A model's metrics stored under the CNN's metric names, so results.npz,
# the CSV files and the figures keep one format: dw_norm holds the gradient
# norm, stationary_dist the relative distance to the teacher, v_cos and
# dv_norm are NaN (relu_network: w_norm is the smallest unit norm, angle the
# largest angle of a unit to its matched teacher unit).
_MODEL_METRIC = {"loss": "loss", "w_norm": ("w_norm", "w_norm_min"), "angle": "angle", "dw_norm": "grad_norm",
                 "stationary_dist": "teacher_dist"}


def _model_records(recs):
    out = {}
    ref = recs["loss"]
    for name in METRICS:
        src = _MODEL_METRIC.get(name)
        if isinstance(src, tuple):
            src = next(s for s in src if s in recs)
        out[name] = recs[src] if src is not None else jnp.full_like(ref, jnp.nan)
    return out


def _flat(x):
    return x.reshape(-1) if x is not None else None


@functools.lru_cache(maxsize=32)
def _group_fn(static_items):
    st = dict(static_items)
    opt = _optimizer_factory(st["optimizer"], st["momentum"])
    if st["kind"] != "cnn":
        from ._modelrun import simulate_model

        def one_model(p):
            model, params0 = draw_model_problem(p["seed"], p, st)
            o = simulate_model(model, params0, p["lr"], optimizer=opt, steps=st["steps"],
                               record_every=st["record_every"], tol=st["tol"])
            recs = _model_records(o["records"])
            ref = recs["loss"][:1]
            none = jnp.full((1,), jnp.nan, ref.dtype)
            out = dict(records=recs, outcome_code=o["outcome_code"], stop_step=o["stop_step"],
                       w=_flat(o["params"]["w"]), w0=_flat(params0["w"]),
                       v=o["params"]["v"] if "v" in o["params"] else none, v0=params0.get("v", none))
            for name in METRICS:
                out["final_" + name] = recs[name][-1]
            return out

        return jax.jit(jax.vmap(one_model))
    ste = resolve_ste(st["ste"])

    def one(p):
        v0, w0, teacher, data = draw_problem(p["seed"], p, st)
        out = simulate(
            v0, w0, teacher, data, p["lr"], p["r"], ste=ste, rule=st["rule"], optimizer=opt,
            steps=st["steps"], record_every=st["record_every"], tol=st["tol"],
            quantizer=Quantizer(st["bits"]) if st["bits"] else None, rho=p["rho"],
        )
        out["v0"], out["w0"] = v0, w0
        return out

    return jax.jit(jax.vmap(one))


def _hashable(st):
    return tuple(sorted(st.items()))


_LANES = 16  # float32 lanes of a 512-bit vector


def _chunk_inputs(cfg, gidx, chunk, st, n_devices):
    dtype = np.dtype(st["dtype"])
    p = {name: _values(cfg, gidx, name, chunk.configs).astype(dtype) for name in DYNAMIC}
    p["seed"] = _values(cfg, gidx, "seed", chunk.configs).astype(np.uint32)
    n_real = len(chunk.configs)
    # Every device gets a whole number of SIMD vectors: XLA's CPU code may
    # round a vector's tail lanes differently from full vectors, so a
    # configuration's last bit would otherwise depend on where the chunking
    # put it.
    pad = (-n_real) % (n_devices * _LANES)
    if pad:  # repeat the last configuration; its copies are dropped afterwards
        p = {k: np.concatenate([v, np.repeat(v[-1:], pad)]) for k, v in p.items()}
    return p, n_real


def _put_sharded(p):
    """Place the chunk's inputs split over every device (all hosts)."""
    devices = jax.devices()
    if len(devices) == 1:
        return p
    mesh = jax.sharding.Mesh(np.asarray(devices), ("b",))
    sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("b"))
    return {k: jax.make_array_from_callback(v.shape, sh, lambda i, v=v: v[i]) for k, v in p.items()}


def _fetch(out):
    if jax.process_count() > 1:  # pragma: no cover - needs a multi-host job
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(out, tiled=True)
    return jax.tree_util.tree_map(np.asarray, out)


def run_chunk(cfg, gidx, groups, chunk, n_devices):
    """Simulate one chunk; returns a dict of NumPy arrays (one row per config)."""
    st = _group_static(cfg, groups[chunk.group])
    fn = _group_fn(_hashable(st))
    p, n_real = _chunk_inputs(cfg, gidx, chunk, st, n_devices)
    out = _fetch(fn(_put_sharded(p)))
    res = {"configs": chunk.configs}
    for k in ("v", "w", "v0", "w0", "outcome_code", "stop_step"):
        res[k] = out[k][:n_real]
    for name in METRICS:
        res["final_" + name] = out["final_" + name][:n_real]
        res["traj_" + name] = out["records"][name][:n_real]
    return res


# ---------------------------------------------------------------------------
# Files


def _atomic_savez(path, **arrays):
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _atomic_write(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _sweep_meta(cfg, chunks):
    return {
        "format": _FORMAT,
        "config": cfg.resolved,
        "n_configs": cfg.size,
        "chunks": [c.name for c in chunks],
    }


def _prepare_out(out, cfg, chunks):
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
    meta_path = os.path.join(out, "sweep.json")
    meta = _sweep_meta(cfg, chunks)
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        if old != json.loads(json.dumps(meta)):
            raise ConfigError(
                f"{out} already holds a different sweep (its sweep.json differs from this configuration "
                "or chunk size); use another --out, or delete the directory to start over"
            )
    else:
        _atomic_write(meta_path, json.dumps(meta, indent=1, sort_keys=True))
    _atomic_write(os.path.join(out, "config.json"), json.dumps(cfg.resolved, indent=1))
    for tmp in glob.glob(os.path.join(out, "chunks", "*.tmp-*")):
        os.remove(tmp)  # leftovers of a killed run; the chunk is redone


def _chunk_path(out, chunk):
    return os.path.join(out, "chunks", chunk.name + ".npz")


def _load_chunk(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------
# Assembly


def _pad(rows, width):
    out = np.full((len(rows), width), np.nan, dtype=rows[0].dtype if rows else np.float64)
    for i, r in enumerate(rows):
        out[i, : r.shape[-1]] = r
    return out


def assemble(cfg, pieces):
    """Join per-chunk results into the arrays of ``results.npz``."""
    C = cfg.size
    gidx = _grid_index(cfg)
    # How the work was cut (chunk size, memory budget) is not part of the
    # result: the same sweep gives the same file whatever they were.
    described = json.loads(json.dumps(cfg.resolved))
    for key in ("chunk_size", "memory_mb"):
        described["execution"].pop(key)
    res = {
        "format": np.asarray(_FORMAT),
        "config_json": np.asarray(json.dumps(described, sort_keys=True)),
        "axis_names": np.asarray([a for a, _ in cfg.axes], dtype=str),
        "outcome_names": np.asarray(OUTCOMES),
        "metric_names": np.asarray(METRICS),
    }
    for name, vals in cfg.axes:
        res["axis_" + name] = np.asarray(vals)
        res["index_" + name] = gidx[name]
    for name in ("m", "n"):
        res[name] = _values(cfg, gidx, name, np.arange(C)).astype(np.int64)
    k = _record_every(cfg)
    res["record_steps"] = _dynamics._record_steps(cfg.resolved["train"]["steps"], k)
    dtype = np.dtype(cfg.resolved["execution"]["dtype"])
    res["outcome_code"] = np.full(C, -1, np.int32)
    res["stop_step"] = np.full(C, -1, np.int32)
    for name in METRICS:
        res["final_" + name] = np.full(C, np.nan, dtype)
    want_traj = cfg.resolved["output"]["trajectories"]
    if want_traj:
        for name in METRICS:
            res["traj_" + name] = np.full((C, len(res["record_steps"])), np.nan, dtype)
    mw, nw = int(res["m"].max(initial=1)), int(res["n"].max(initial=1))
    kind = cfg.resolved["model"]["kind"]
    # the ReLU models store w as (units x n) flattened and v of length depth - 1
    if kind == "relu_network":
        nw *= int(_values(cfg, gidx, "hidden", np.arange(C)).max(initial=1))
    elif kind == "relu_neuron":
        mw = max(mw, int(_values(cfg, gidx, "depth", np.arange(C)).max(initial=1)) - 1)
    for key, width in (("v", mw), ("w", nw), ("v0", mw), ("w0", nw)):
        res[key] = np.full((C, width), np.nan, dtype)
    for piece in pieces:
        c = piece["configs"]
        res["outcome_code"][c] = piece["outcome_code"]
        res["stop_step"][c] = piece["stop_step"]
        for name in METRICS:
            res["final_" + name][c] = piece["final_" + name]
            if want_traj:
                res["traj_" + name][c] = piece["traj_" + name]
        for key in ("v", "w", "v0", "w0"):
            res[key][c, : piece[key].shape[1]] = piece[key]
    if np.any(res["outcome_code"] < 0):  # pragma: no cover - guarded by the chunk list
        raise RuntimeError("some configurations have no result")
    res["outcome"] = np.asarray(OUTCOMES)[res["outcome_code"]]
    return res


def _write_csv(out, res):
    axes = list(res["axis_names"])
    path = os.path.join(out, "summary.csv")
    cols = ["config"] + axes + ["outcome", "stop_step"] + ["final_" + m for m in METRICS]
    rows = zip(
        range(len(res["outcome"])),
        *[res["axis_" + a][res["index_" + a]] for a in axes],
        res["outcome"],
        res["stop_step"],
        *[res["final_" + m] for m in METRICS],
    )
    tmp = path + f".tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        for row in rows:
            wr.writerow([x if isinstance(x, (str, np.str_)) else (repr(float(x)) if isinstance(x, (float, np.floating)) else int(x)) for x in row])
    os.replace(tmp, path)
    # Fractions of each outcome per cell of the non-seed axes.
    cell_axes = [a for a in axes if a != "seed"]
    path = os.path.join(out, "fractions.csv")
    if cell_axes:
        shape = [len(res["axis_" + a]) for a in cell_axes]
        cell = np.ravel_multi_index([res["index_" + a] for a in cell_axes], shape)
    else:
        shape, cell = [1], np.zeros(len(res["outcome"]), np.int64)
    n_cells = int(np.prod(shape))
    counts = np.zeros((n_cells, len(OUTCOMES)))
    np.add.at(counts, (cell, res["outcome_code"]), 1)
    totals = counts.sum(1, keepdims=True)
    tmp = path + f".tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(cell_axes + ["runs"] + list(OUTCOMES))
        for c in range(n_cells):
            if totals[c, 0] == 0:
                continue
            ids = np.unravel_index(c, shape) if cell_axes else ()
            vals = [res["axis_" + a][i] for a, i in zip(cell_axes, ids)]
            vals = [str(v) if isinstance(v, np.str_) else repr(float(v)) if isinstance(v, np.floating) else int(v) for v in vals]
            wr.writerow(vals + [int(totals[c, 0])] + [f"{x:.6g}" for x in counts[c] / totals[c, 0]])
    os.replace(tmp, path)


def load_results(out_or_file):
    """Read a sweep's ``results.npz`` (NumPy only, no pickle) into a dict."""
    path = out_or_file
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS)
    if not os.path.exists(path):
        raise ConfigError(f"no results file at {path}; run `stedyn sweep` (or `stedyn merge`) first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------
# Entry points


def _parse_shard(shard):
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like i/N with integers, e.g. 0/4; got {shard!r}") from None
    else:
        i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard i/N needs N >= 1 and 0 <= i < N; got {i}/{n}")
    return i, n


def _check_dtype(cfg):
    if cfg.resolved["execution"]["dtype"] == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError(
            "execution.dtype = 'float64' needs 64-bit JAX: pass --x64 on the command line or call "
            "jax.config.update('jax_enable_x64', True) first"
        )


def sweep(config=None, out=None, *, shard=None, progress=True, finish=True):
    """Run a parameter sweep.

    Args:
      config: a TOML path, a dict as TOML parses, a :class:`SweepConfig`, or
        ``None`` for the built-in default (the Proper-STE story).
      out: output directory, or ``None`` to keep everything in memory.
        With a directory, finished chunks are written as they complete and
        a rerun resumes; when every chunk is there, ``results.npz``,
        ``summary.csv``, ``fractions.csv``, ``config.json`` and figures are
        written.
      shard: ``"i/N"`` or ``(i, N)``: run only chunks ``i, i+N, i+2N, ...``
        (needs ``out``); join the slices with :func:`merge`.
      progress: show a progress bar with ETA over chunks (on stderr).
      finish: assemble ``results.npz`` (and figures) when all chunks exist.

    Returns:
      The results dict (the arrays of ``results.npz``), or ``None`` for a
      shard run that leaves chunks for other shards.
    """
    cfg = _as_config(config)
    _check_dtype(cfg)
    i, n_shards = _parse_shard(shard)
    if n_shards > 1 and out is None:
        raise ConfigError("a sharded sweep needs an output directory (--out)")
    n_devices = len(jax.devices())
    groups, chunks = plan(cfg)
    gidx = _grid_index(cfg)
    mine = [c for k, c in enumerate(chunks) if k % n_shards == i]
    if out is not None:
        _prepare_out(out, cfg, chunks)
        todo = [c for c in mine if not os.path.exists(_chunk_path(out, c))]
    else:
        todo = mine
    pieces = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="chunk", desc=cfg.resolved["name"])
    try:
        for c in todo:
            piece = run_chunk(cfg, gidx, groups, c, n_devices)
            if out is None:
                pieces.append(piece)
            elif jax.process_index() == 0:
                _atomic_savez(_chunk_path(out, c), **piece)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if out is None:
        return assemble(cfg, pieces)
    if not finish or jax.process_index() != 0:
        return None
    missing = [c for c in chunks if not os.path.exists(_chunk_path(out, c))]
    if missing:
        return None
    return finalize(out, cfg, chunks)


def finalize(out, cfg=None, chunks=None):
    """Assemble ``results.npz``, CSVs and figures from a complete chunk set."""
    if cfg is None:
        with open(os.path.join(out, "sweep.json")) as f:
            meta = json.load(f)
        cfg = _config_from_resolved(meta["config"])
        chunks = plan(cfg)[1]
    res = assemble(cfg, (_load_chunk(_chunk_path(out, c)) for c in chunks))
    _atomic_savez(os.path.join(out, RESULTS), **res)
    if cfg.resolved["output"]["csv"]:
        _write_csv(out, res)
    if cfg.resolved["output"]["figures"]:
        from ._plot import plot_results

        plot_results(res, out)
    return res


def _config_from_resolved(resolved):
    raw = {k: v for k, v in resolved.items() if k != "axes"}
    axes = dict(resolved.get("axes", []))
    for name in axes:  # an axis's fixed key must not also be given
        section, key = AXES[name]
        if section is None:
            raw.pop(key, None)
        else:
            raw[section] = {k: v for k, v in raw[section].items() if k != key}
    raw["axes"] = {name: list(vals) for name, vals in axes.items()}
    return parse_config(raw)


def merge(out, *others):
    """Join the chunks of sharded runs into ``out`` and assemble the results.

    Args:
      out: the directory to complete (it may already hold some chunks).
      others: more shard directories whose chunks are copied into ``out``.
        All must hold the same sweep (identical ``sweep.json``).
    """
    dirs = [out, *others]
    metas = []
    for d in dirs:
        path = os.path.join(d, "sweep.json")
        if not os.path.exists(path):
            raise ConfigError(f"{d} is not a sweep directory (no sweep.json)")
        with open(path) as f:
            metas.append(json.load(f))
    if any(m != metas[0] for m in metas[1:]):
        raise ConfigError("the directories hold different sweeps (their sweep.json differ); cannot merge")
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
    for d in others:
        for path in glob.glob(os.path.join(d, "chunks", "g*_c*.npz")):
            dest = os.path.join(out, "chunks", os.path.basename(path))
            if ".tmp-" not in path and not os.path.exists(dest):
                shutil.copyfile(path, dest + ".tmp-merge")
                os.replace(dest + ".tmp-merge", dest)
    names = metas[0]["chunks"]
    missing = [n for n in names if not os.path.exists(os.path.join(out, "chunks", n + ".npz"))]
    if missing:
        raise ConfigError(f"{len(missing)} of {len(names)} chunks are missing (e.g. {missing[0]}); run the remaining shards first")
    cfg = _config_from_resolved(metas[0]["config"])
    _, chunks = plan(cfg)
    if [c.name for c in chunks] != names:  # pragma: no cover - same config, same plan
        raise ConfigError("the chunk plan differs from the one recorded in sweep.json")
    return finalize(out, cfg, chunks)
