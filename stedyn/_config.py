"""Sweep configuration: a TOML file, validated up front into plain data.

Every key is checked before any computation: unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the key and the allowed
values. The result is a :class:`SweepConfig` whose ``resolved`` dict is the
whole configuration with every default filled in (written next to the
results, so a results directory describes itself).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ._activations import ACTIVATIONS
from ._dynamics import OUTCOMES, RULES, Tolerances
from ._ste import BUILTIN_STES


class ConfigError(ValueError):
    """A sweep configuration that cannot run; the message names the key."""


_NUM = (int, float)
OPTIMIZERS = ("none", "sgd", "momentum", "adam")
DATA_KINDS = ("gaussian", "mixture")
MODEL_KINDS = ("cnn", "relu_network", "relu_neuron")


def _pos(x):
    return x > 0


def _nonneg(x):
    return x >= 0


def _angle_ok(x):
    return 0 <= x <= math.pi


# key -> (type, default, check, description of allowed values)
SCHEMA = {
    "model": {
        "kind": (str, "cnn", lambda s: s in MODEL_KINDS,
                 f"one of {MODEL_KINDS} (the STE-trained CNN; Tian's K-unit ReLU network; Lee-Sim-Ye's single ReLU neuron)"),
        "m": (int, 10, _pos, "an integer >= 1"),
        "n": (int, 20, _pos, "an integer >= 1 (input dimension d of the ReLU models)"),
        "hidden": (int, 2, _pos, "an integer >= 1 (relu_network: K student = K* teacher units)"),
        "depth": (int, 2, _pos, "an integer >= 1 (relu_neuron: number of layers)"),
    },
    "data": {
        "kind": (str, "gaussian", lambda s: s in DATA_KINDS, f"one of {DATA_KINDS}"),
        "sigma": (_NUM, 1.0, _pos, "a number > 0 (input std; per component for a mixture)"),
        "components": (int, 10, _pos, "an integer >= 1 (mixture components K)"),
        "mean_scale": (_NUM, 1.0, _nonneg, "a number >= 0 (mixture means ~ mean_scale N(0, 1) per entry)"),
    },
    "teacher": {
        "activation": (str, "relu", lambda s: s in ACTIVATIONS, f"one of {tuple(ACTIVATIONS)}"),
        "v_scale": (_NUM, 1.0, _pos, "a number > 0 (v* ~ v_scale N(0, I_m))"),
        "w_norm": (_NUM, 1.0, _pos, "a number > 0 (|w*|)"),
    },
    "init": {
        "angle": (_NUM, 1.0, _angle_ok, "a number in [0, pi] (initial angle to w*)"),
        "w_norm": (_NUM, 1.0, _pos, "a number > 0 (initial |w|)"),
        "v_scale": (_NUM, 1.0, _nonneg, "a number >= 0 (v0 ~ v_scale N(0, I_m))"),
        "seed": (int, 0, _nonneg, "an integer >= 0 (which random draw of teacher and start)"),
    },
    "train": {
        "ste": (str, "crelu", lambda s: s in BUILTIN_STES, f"one of {tuple(BUILTIN_STES)}"),
        "r": (_NUM, 1.0, _pos, "a number > 0 (clip value)"),
        "lr": (_NUM, 0.05, _pos, "a number > 0"),
        "steps": (int, 2000, _nonneg, "an integer >= 0"),
        "record_every": (int, 0, _nonneg, "an integer >= 1, or 0 for steps // 100"),
        "rule": (str, "coarse", lambda s: s in RULES, f"one of {RULES}"),
        "optimizer": (str, "none", lambda s: s in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        "momentum": (_NUM, 0.9, lambda x: 0 <= x < 1, "a number in [0, 1)"),
        "bits": (int, 0, lambda b: 0 <= b <= 16, "an integer in [0, 16] (quantized filter bit width; 0: float filter)"),
        "rho": (_NUM, 0.0, lambda x: 0 <= x < 1, "a number in [0, 1) (BCGD eq. 10 blending; 0: BinaryConnect)"),
    },
    "tolerances": {
        f.name: (_NUM, f.default, _nonneg, "a number >= 0") for f in dataclasses.fields(Tolerances)
    },
    "output": {
        "trajectories": (bool, True, None, "true or false (store every run's recorded metrics)"),
        "csv": (bool, True, None, "true or false"),
        "figures": (bool, True, None, "true or false"),
    },
    "execution": {
        "chunk_size": (int, 0, _nonneg, "an integer >= 1, or 0 to size chunks from memory_mb"),
        "memory_mb": (_NUM, 1024, _pos, "a number > 0 (device memory one chunk may use)"),
        "dtype": (str, "float32", lambda s: s in ("float32", "float64"), "'float32' or 'float64'"),
    },
    "plot": {
        "x": (str, "", None, "a swept axis name"),
        "y": (str, "", None, "a swept axis name"),
        "panels": (str, "", None, "a swept axis name, or '' for one panel"),
        "outcomes": (list, [], None, f"a list of outcome names from {OUTCOMES}"),
        "max_trajectories": (int, 200, _nonneg, "an integer >= 0"),
    },
}
# The top-level seed is the base key of every draw (and of random axes);
# init.seed / axes.seed pick the draw of one configuration under it.
TOP = {"name": (str, "sweep", None, "a string"), "seed": (int, 0, _nonneg, "an integer >= 0")}

# Axis name -> the (section, key) whose value it sweeps.
AXES = {
    "angle": ("init", "angle"),
    "w_norm": ("init", "w_norm"),
    "v_scale": ("init", "v_scale"),
    "r": ("train", "r"),
    "sigma": ("data", "sigma"),
    "components": ("data", "components"),
    "lr": ("train", "lr"),
    "m": ("model", "m"),
    "n": ("model", "n"),
    "hidden": ("model", "hidden"),
    "depth": ("model", "depth"),
    "seed": ("init", "seed"),
    "ste": ("train", "ste"),
    "activation": ("teacher", "activation"),
    "rule": ("train", "rule"),
    "bits": ("train", "bits"),
    "rho": ("train", "rho"),
}
# Axes that change shapes or code: each value compiles its own program.
STATIC_AXES = ("m", "n", "components", "ste", "activation", "rule", "bits", "hidden", "depth")
AXIS_FORMS = "a list of values, or a table {linspace=[a, b], num=k}, {geomspace=[a, b], num=k}, {range=k} or {random=[a, b], num=k, log=false}"


def _type_ok(x, typ):
    if typ is _NUM:
        return isinstance(x, _NUM) and not isinstance(x, bool)
    if typ is int:
        return isinstance(x, int) and not isinstance(x, bool)
    return isinstance(x, typ)


def _type_name(typ):
    return {str: "a string", int: "an integer", bool: "true/false", list: "a list"}.get(typ, "a number")


def _check_value(key, x, spec):
    typ, _, check, allowed = spec
    if not _type_ok(x, typ):
        raise ConfigError(f"{key} must be {allowed}; got {x!r} ({_type_name(typ)} expected)")
    if typ is _NUM and not math.isfinite(x):
        raise ConfigError(f"{key} must be {allowed}; got {x!r}")
    if check is not None and not check(x):
        raise ConfigError(f"{key} must be {allowed}; got {x!r}")
    return float(x) if typ is _NUM else x


def _axis_values(name, spec, seed):
    section, key = AXES[name]
    vspec = TOP[key] if section is None else SCHEMA[section][key]
    where = f"axes.{name}"
    if isinstance(spec, list):
        vals = spec
    elif isinstance(spec, dict):
        forms = [k for k in ("linspace", "geomspace", "range", "random") if k in spec]
        extra = set(spec) - {"linspace", "geomspace", "range", "random", "num", "log"}
        if len(forms) != 1 or extra:
            raise ConfigError(f"{where} must be {AXIS_FORMS}; got {spec!r}")
        form = forms[0]
        if form == "range":
            k = spec["range"]
            if not _type_ok(k, int) or k < 1 or set(spec) != {"range"}:
                raise ConfigError(f"{where}.range must be an integer >= 1 (alone); got {spec!r}")
            vals = list(range(k))
        else:
            ab, num = spec[form], spec.get("num")
            if not (isinstance(ab, list) and len(ab) == 2 and all(_type_ok(a, _NUM) for a in ab)):
                raise ConfigError(f"{where}.{form} must be a list of two numbers [a, b]; got {ab!r}")
            if not _type_ok(num, int) or num < 1:
                raise ConfigError(f"{where}.num must be an integer >= 1; got {num!r}")
            if vspec[0] is not _NUM:
                raise ConfigError(f"{where}: {form} makes real numbers, but {name} takes {vspec[3]}")
            log = spec.get("log", form == "geomspace")
            if not isinstance(log, bool) or ("log" in spec and form != "random"):
                raise ConfigError(f"{where}.log is only for random axes and must be true/false; got {spec!r}")
            a, b = float(ab[0]), float(ab[1])
            if (form == "geomspace" or log) and not (a > 0 and b > 0):
                raise ConfigError(f"{where}: geometric spacing needs a, b > 0; got {ab!r}")
            if form == "linspace":
                vals = np.linspace(a, b, num).tolist()
            elif form == "geomspace":
                vals = np.geomspace(a, b, num).tolist()
            else:
                # A random axis is a list drawn once from the sweep's seed and the
                # axis name, so it is the same on every rerun, shard and chunk.
                rng = np.random.default_rng([seed, *name.encode()])
                u = rng.uniform(size=num)
                vals = (np.exp(np.log(a) + u * (np.log(b) - np.log(a))) if log else a + u * (b - a)).tolist()
    else:
        raise ConfigError(f"{where} must be {AXIS_FORMS}; got {spec!r}")
    if not vals:
        raise ConfigError(f"{where} must have at least one value")
    out = [_check_value(f"{where}[{i}]", x, vspec) for i, x in enumerate(vals)]
    if len(set(out)) != len(out):
        raise ConfigError(f"{where} has repeated values: {out}")
    return out


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated sweep.

    Attributes:
      resolved: the full configuration, defaults filled in (JSON-able).
      axes: ordered ``(name, values)`` pairs; the grid is their product.
    """

    resolved: dict
    axes: tuple

    @property
    def shape(self):
        return tuple(len(v) for _, v in self.axes)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def fingerprint(self):
        """What must match for chunk files to be reused (resume, merge)."""
        return json.dumps(self.resolved, sort_keys=True)

    def value(self, section, key):
        return self.resolved[key] if section is None else self.resolved[section][key]


def parse_config(raw: dict) -> SweepConfig:
    """Validate a configuration dict (as TOML parses it)."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a TOML table")
    allowed_top = set(SCHEMA) | set(TOP) | {"axes"}
    for key in raw:
        if key not in allowed_top:
            raise ConfigError(f"unknown key {key!r}; allowed top-level keys: {sorted(allowed_top)}")
    resolved = {}
    for key, spec in TOP.items():
        resolved[key] = _check_value(key, raw[key], spec) if key in raw else spec[1]
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table of keys {sorted(keys)}")
        for key in given:
            if key not in keys:
                raise ConfigError(f"unknown key {section}.{key}; allowed: {sorted(keys)}")
        resolved[section] = {
            key: (_check_value(f"{section}.{key}", given[key], spec) if key in given else spec[1])
            for key, spec in keys.items()
        }
    outs = resolved["plot"]["outcomes"]
    for o in outs:
        if o not in OUTCOMES:
            raise ConfigError(f"plot.outcomes entries must be among {OUTCOMES}; got {o!r}")
    try:
        Tolerances(**resolved["tolerances"])
    except ValueError as e:
        raise ConfigError(str(e).replace("Tolerances.", "tolerances.")) from None

    axes_raw = raw.get("axes", {})
    if not isinstance(axes_raw, dict):
        raise ConfigError("[axes] must be a table: axis name -> values")
    axes = []
    for name, spec in axes_raw.items():
        if name not in AXES:
            raise ConfigError(f"unknown axis axes.{name}; allowed axes: {sorted(AXES)}")
        section, key = AXES[name]
        if section is not None and key in raw.get(section, {}):
            raise ConfigError(f"{section}.{key} is fixed and also swept as axes.{name}; keep one")
        if section is None and key in raw:
            raise ConfigError(f"{key} is fixed at the top level and also swept as axes.{name}; keep one")
        axes.append((name, _axis_values(name, spec, resolved["seed"])))
    resolved["axes"] = [[name, list(vals)] for name, vals in axes]  # a list: the order is the grid's

    ax_names = [a for a, _ in axes]
    if "components" in ax_names and resolved["data"]["kind"] != "mixture":
        raise ConfigError("axes.components needs data.kind = 'mixture'")
    swept = dict(axes)
    bits = swept.get("bits", [resolved["train"]["bits"]])
    rhos = swept.get("rho", [resolved["train"]["rho"]])
    rules = swept.get("rule", [resolved["train"]["rule"]])
    if any(r > 0 for r in rhos) and not any(b > 0 for b in bits):
        raise ConfigError("train.rho (blending) needs a quantized filter: set train.bits >= 1")
    if any(b > 0 for b in bits) and "normalized" in rules:
        raise ConfigError("train.bits >= 1 (quantized filter) works with train.rule 'coarse' or 'true', not 'normalized'")
    kind = resolved["model"]["kind"]
    if kind != "cnn" and "rule" not in raw.get("train", {}):
        resolved["train"]["rule"] = "true"  # the models' only rule; the CNN's default is "coarse"
    if kind != "cnn":
        # The ReLU models train by gradient descent on their exact loss (no STE) on Gaussian input.
        rules = [resolved["train"]["rule"]] + list(dict(axes).get("rule", ()))
        if any(r != "true" for r in rules):
            raise ConfigError(f"model.kind = {kind!r} trains with train.rule = 'true' only; got {rules}")
        if resolved["data"]["kind"] != "gaussian":
            raise ConfigError(f"model.kind = {kind!r} needs data.kind = 'gaussian'")
        if any(b > 0 for b in bits):
            raise ConfigError(f"train.bits (quantized filter) applies to model.kind = 'cnn' only; got {kind!r}")
        bad = [a for a in ax_names if a in ("m", "ste", "activation", "r", "v_scale", "components", "bits", "rho")]
        if bad:
            other = "depth" if kind == "relu_network" else "hidden"
            allowed = sorted(set(AXES) - {"m", "ste", "activation", "r", "v_scale", "components", "bits", "rho", "rule", other})
            raise ConfigError(f"axes {bad} do not apply to model.kind = {kind!r}; allowed axes there: {allowed}")
    for a, key in (("hidden", "relu_network"), ("depth", "relu_neuron")):
        if a in ax_names and kind != key:
            raise ConfigError(f"axes.{a} needs model.kind = {key!r}")
    for k in ("x", "y", "panels"):
        v = resolved["plot"][k]
        if v and v not in ax_names:
            raise ConfigError(f"plot.{k} must be one of the swept axes {ax_names}; got {v!r}")
    return SweepConfig(resolved=resolved, axes=tuple((a, tuple(v)) for a, v in axes))


def load_config(path) -> SweepConfig:
    """Read and validate a TOML sweep file."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return parse_config(raw)


DEFAULT_CONFIG = """\
# The default sweep: the Proper-STE story (Proper-STE Sec. 3). A ReLU teacher on
# Gaussian input; coarse gradient descent with the identity, ReLU and
# clipped-ReLU STEs from initial angles across (0, pi) and clip values r.
# Expected from the paper: only the clipped ReLU reaches the global minimum.
name = "proper-ste-default"
seed = 0

[model]
m = 10
n = 20

[data]
kind = "gaussian"
sigma = 1.0

[teacher]
activation = "relu"

[init]
w_norm = 1.0
v_scale = 1.0

[train]
lr = 0.05
steps = 4000
record_every = 100

[axes]
ste = ["identity", "relu", "crelu"]
angle = { linspace = [0.1, 3.0], num = 10 }
r = { geomspace = [0.25, 4.0], num = 5 }
seed = { range = 6 }

[plot]
x = "angle"
y = "r"
panels = "ste"
"""


def default_config() -> SweepConfig:
    return parse_config(tomllib.loads(DEFAULT_CONFIG))
