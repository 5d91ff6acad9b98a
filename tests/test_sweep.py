"""Sweeps: config validation, chunk/device/shard invariance, resume after a
kill, merge, output files, and the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import stedyn as sd
from stedyn import _cli, _sweep

TINY = {
    "name": "tiny",
    "model": {"m": 3, "n": 4},
    "train": {"steps": 60, "record_every": 20, "lr": 0.1},
    "axes": {
        "ste": ["relu", "crelu"],
        "angle": {"linspace": [0.3, 2.8], "num": 3},
        "r": [0.5, 2.0],
        "seed": {"range": 2},
    },
    "plot": {"x": "angle", "y": "r", "panels": "ste"},
}
TINY_TOML = """
name = "tiny"
[model]
m = 3
n = 4
[train]
steps = 60
record_every = 20
lr = 0.1
[axes]
ste = ["relu", "crelu"]
angle = { linspace = [0.3, 2.8], num = 3 }
r = [0.5, 2.0]
seed = { range = 2 }
[plot]
x = "angle"
y = "r"
panels = "ste"
"""


def with_exec(**kw):
    raw = json.loads(json.dumps(TINY))
    raw["execution"] = kw
    return raw


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        if a[k].dtype.kind in "fc":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert np.array_equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    res = sd.sweep(with_exec(chunk_size=24), str(out), progress=False)
    return str(out), res


def test_results_file_is_self_describing(reference):
    out, res = reference
    z = np.load(os.path.join(out, "results.npz"), allow_pickle=False)
    assert list(z["axis_names"]) == ["ste", "angle", "r", "seed"]
    assert z["outcome_code"].shape == (24,)
    assert set(z["outcome"]) <= set(sd.OUTCOMES)
    np.testing.assert_array_equal(z["axis_r"], [0.5, 2.0])
    assert z["traj_loss"].shape == (24, 4) and list(z["record_steps"]) == [0, 20, 40, 60]
    cfg = json.loads(str(z["config_json"]))
    assert cfg["train"]["steps"] == 60 and cfg["model"]["m"] == 3
    # Configuration order is C order over the axes.
    i = 5
    assert (z["index_ste"][i], z["index_angle"][i], z["index_r"][i], z["index_seed"][i]) == (0, 1, 0, 1)
    for f in ("summary.csv", "fractions.csv", "config.json", "heatmap.png", "trajectories.png", "phase.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    lines = open(os.path.join(out, "summary.csv")).read().strip().splitlines()
    assert len(lines) == 25 and lines[0].startswith("config,ste,angle,r,seed,outcome")


def test_each_configuration_matches_sd_run(reference):
    """A sweep row is the same computation as sd.run on the drawn problem."""
    _, res = reference
    cfg = sd.parse_config(with_exec(chunk_size=24))
    st = _sweep._group_static(cfg, {"ste": "crelu"})
    i = int(np.nonzero((res["index_ste"] == 1) & (res["index_angle"] == 2) & (res["index_r"] == 1))[0][0])
    p = {k: np.float32(res["axis_" + k][res["index_" + k][i]]) if k in ("angle", "r") else np.float32(cfg.value(*sd._config.AXES[k])) for k in _sweep.DYNAMIC}
    v0, w0, teacher, data = _sweep.draw_problem(np.uint32(res["index_seed"][i]), p, st)
    one = sd.run(v0, w0, teacher, data, ste="crelu", r=p["r"], lr=p["lr"], steps=60, record_every=20)
    np.testing.assert_allclose(res["w"][i], one.w, rtol=1e-6)
    assert res["outcome"][i] == one.outcome


def test_chunk_size_does_not_change_results(reference, tmp_path):
    _, ref = reference
    for k in (5,):  # 5 does not divide the group size 12: padded last chunk
        res = sd.sweep(with_exec(chunk_size=k), str(tmp_path / f"c{k}"), progress=False)
        assert_same({k2: v for k2, v in res.items() if k2 != "config_json"},
                    {k2: v for k2, v in ref.items() if k2 != "config_json"})


def test_device_count_does_not_change_results(reference, tmp_path):
    """Same sweep on 1 CPU device in a subprocess vs 4 here (conftest)."""
    import jax

    assert len(jax.devices()) == 4
    out, ref = reference
    script = (
        "import jax, json, sys; jax.config.update('jax_enable_x64', True);"
        "jax.config.update('jax_num_cpu_devices', 1); import stedyn as sd;"
        "assert len(jax.devices()) == 1;"
        f"sd.sweep(json.loads(sys.argv[1]), sys.argv[2], progress=False)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", script, json.dumps(with_exec(chunk_size=24)), str(tmp_path)], check=True, env=env)
    assert_same(sd.load_results(str(tmp_path)), ref)


def test_kill_and_resume_gives_the_same_file(reference, monkeypatch, tmp_path):
    out_ref, ref = reference
    cfg = with_exec(chunk_size=5)
    real = _sweep.run_chunk
    calls = []

    def dying(*a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user's Ctrl-C between chunks
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(_sweep, "run_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        sd.sweep(cfg, str(tmp_path), progress=False)
    assert len(os.listdir(tmp_path / "chunks")) == 2
    assert not os.path.exists(tmp_path / "results.npz")
    monkeypatch.setattr(_sweep, "run_chunk", real)
    done = []
    monkeypatch.setattr(_sweep, "run_chunk", lambda *a, **k: done.append(1) or real(*a, **k))
    sd.sweep(cfg, str(tmp_path), progress=False)
    assert len(done) == len(_sweep.plan(sd.parse_config(cfg))[1]) - 2  # only the missing chunks ran
    assert_same(sd.load_results(str(tmp_path)), ref)


def test_shards_and_merge_give_the_unsharded_file(reference, tmp_path):
    _, ref = reference
    cfg = with_exec(chunk_size=24)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    cfg5 = with_exec(chunk_size=5)
    assert sd.sweep(cfg5, a, shard="0/2", progress=False) is None
    assert sd.sweep(cfg5, b, shard=(1, 2), progress=False) is None
    with pytest.raises(sd.ConfigError, match="chunks are missing"):
        sd.merge(a)
    res = sd.merge(a, b)
    assert_same(res, sd.load_results(a))
    assert_same(res, ref)
    with pytest.raises(sd.ConfigError, match="different sweep"):
        sd.sweep(cfg, a, progress=False)


def test_in_memory_sweep_and_plan_bounds_memory():
    res = sd.sweep(with_exec(chunk_size=5), None, progress=False)
    assert res["outcome_code"].shape == (24,)
    # A 10^6-configuration sweep is cut into chunks that fit the memory budget.
    big = sd.parse_config({"axes": {"angle": {"linspace": [0, 3], "num": 1000}, "seed": {"range": 1000}}})
    assert big.size == 10**6
    groups, chunks = _sweep.plan(big)
    per = _sweep._bytes_per_config(big, 10, 20)
    assert sum(len(c.configs) for c in chunks) == 10**6
    assert max(len(c.configs) for c in chunks) * per <= big.resolved["execution"]["memory_mb"] * 2**20


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"train": {"lrr": 0.1}}, r"unknown key train.lrr; allowed: \["),
        ({"train": {"lr": -1}}, "train.lr must be a number > 0"),
        ({"train": {"lr": "fast"}}, "train.lr must be a number > 0"),
        ({"train": {"steps": 1.5}}, "train.steps must be an integer >= 0"),
        ({"train": {"ste": "sign"}}, "train.ste must be one of"),
        ({"teacher": {"activation": "gelu"}}, "teacher.activation must be one of"),
        ({"data": {"sigma": 0}}, "data.sigma must be a number > 0"),
        ({"init": {"angle": 4}}, r"init.angle must be a number in \[0, pi\]"),
        ({"axes": {"speed": [1]}}, "unknown axis axes.speed"),
        ({"axes": {"angle": {"linspace": [0, 1]}}}, "axes.angle.num must be an integer >= 1"),
        ({"axes": {"angle": {"logspace": [0, 1], "num": 2}}}, "axes.angle must be a list of values, or a table"),
        ({"axes": {"r": {"geomspace": [0, 1], "num": 2}}}, "geometric spacing needs a, b > 0"),
        ({"axes": {"ste": {"linspace": [0, 1], "num": 2}}}, "linspace makes real numbers"),
        ({"axes": {"m": [2, 0]}}, r"axes.m\[1\] must be an integer >= 1"),
        ({"axes": {"r": [1.0, 1.0]}}, "repeated values"),
        ({"axes": {"r": []}}, "at least one value"),
        ({"train": {"r": 1.0}, "axes": {"r": [1.0, 2.0]}}, "train.r is fixed and also swept"),
        ({"plot": {"x": "angle"}}, "plot.x must be one of the swept axes"),
        ({"plot": {"outcomes": ["won"]}}, "plot.outcomes entries"),
        ({"tolerances": {"w_ratio": 0.5}}, "tolerances.w_ratio must be > 1"),
        ({"execution": {"dtype": "float16"}}, "execution.dtype must be 'float32' or 'float64'"),
    ],
)
def test_config_errors_name_the_key(raw, match):
    with pytest.raises(sd.ConfigError, match=match):
        sd.parse_config(raw)


def test_random_axes_are_reproducible_and_default_config_is_valid():
    raw = {"seed": 3, "axes": {"lr": {"random": [0.01, 0.1], "num": 4, "log": True}}}
    a, b = sd.parse_config(raw), sd.parse_config(raw)
    assert a.axes == b.axes
    vals = np.asarray(a.axes[0][1])
    assert np.all((vals >= 0.01) & (vals <= 0.1))
    assert a.axes != sd.parse_config({**raw, "seed": 4}).axes
    d = sd.default_config()
    assert [n for n, _ in d.axes] == ["ste", "angle", "r", "seed"] and d.size == 900


def test_cli_sweep_plot_run_merge_and_errors(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "out"
    assert _cli.main(["sweep", str(cfg), "--out", str(out), "--no-progress", "--chunk-size", "5"]) == 0
    text = capsys.readouterr().out
    assert "24 runs:" in text and os.path.exists(out / "heatmap.png")
    os.remove(out / "heatmap.png")
    assert _cli.main(["plot", str(out), "--x", "r", "--y", "angle"]) == 0
    assert os.path.exists(out / "heatmap.png")
    single = tmp_path / "one.toml"
    single.write_text(TINY_TOML.replace('"tiny"', '"one"').split("[axes]")[0] + '[axes]\nste = ["relu", "crelu"]\n')
    assert _cli.main(["run", str(single), "--out", str(tmp_path / "one")]) == 0
    assert "[1] ste=crelu" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "one" / "trajectories.png")
    sh0, sh1 = tmp_path / "s0", tmp_path / "s1"
    assert _cli.main(["sweep", str(cfg), "--out", str(sh0), "--shard", "0/2", "--chunk-size", "5", "--no-progress"]) == 0
    assert "stedyn merge" in capsys.readouterr().out
    assert _cli.main(["sweep", str(cfg), "--out", str(sh1), "--shard", "1/2", "--chunk-size", "5", "--no-progress"]) == 0
    assert _cli.main(["merge", str(sh0), str(sh1)]) == 0
    assert_same(sd.load_results(str(sh0)), sd.load_results(str(out)))
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    for text, needle in [
        ('[train]\nlr = "x"\n', "train.lr must be a number > 0"),
        ("[axes\n", "is not valid TOML"),
    ]:
        bad.write_text(text)
        assert _cli.main(["sweep", str(bad), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _cli.main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert _cli.main(["sweep", str(cfg), "--shard", "3/2", "--out", str(tmp_path / "y")]) == 2
    assert "--shard" in capsys.readouterr().err
    assert _cli.main(["plot", str(tmp_path / "nowhere")]) == 2
    assert _cli.main(["config"]) == 0
    assert "[axes]" in capsys.readouterr().out


def test_mixture_components_axis(tmp_path):
    """data.kind = "mixture" with a components axis: one program per K, each
    row the same computation as sd.run on the drawn mixture."""
    raw = {
        "model": {"m": 3, "n": 4},
        "data": {"kind": "mixture", "mean_scale": 0.5},
        "teacher": {"activation": "tanh"},
        "train": {"steps": 20, "record_every": 10, "lr": 0.05, "ste": "crelu"},
        "axes": {"components": [1, 3], "angle": [0.5, 2.0]},
        "plot": {"x": "angle", "y": "components"},
        # float64 programs compile about twice as fast as the float32 rule's.
        "execution": {"dtype": "float64"},
        "output": {"figures": False},
    }
    res = sd.sweep(raw, str(tmp_path), progress=False)
    assert list(res["axis_components"]) == [1, 3]
    assert np.all(np.isfinite(res["final_loss"]))
    cfg = sd.parse_config(raw)
    for i in (3,):
        K = int(res["axis_components"][res["index_components"][i]])
        st = _sweep._group_static(cfg, {"components": K})
        p = {k: np.float64(res["axis_angle"][res["index_angle"][i]]) if k == "angle" else np.float64(cfg.value(*sd._config.AXES[k])) for k in _sweep.DYNAMIC}
        v0, w0, teacher, data = _sweep.draw_problem(np.uint32(0), p, st)
        assert isinstance(data, sd.GaussianMixture) and data.means.shape == (K, 3, 4)
        one = sd.run(v0, w0, teacher, data, ste="crelu", r=1.0, lr=p["lr"], steps=20, record_every=10)
        np.testing.assert_allclose(res["w"][i], one.w, rtol=1e-10)
        np.testing.assert_allclose(res["final_loss"][i], sd.population_loss(one.v, one.w, teacher, data), rtol=1e-10)
    with pytest.raises(sd.ConfigError, match="axes.components needs data.kind = 'mixture'"):
        sd.parse_config({**raw, "data": {"kind": "gaussian"}})


def test_quantized_filter_axes(tmp_path):
    """train.bits / train.rho: a bits axis (one program per bit width) and a
    rho axis (BinaryConnect at 0, blended above); each row is sd.run with the
    same quantizer and rho on the drawn problem."""
    raw = {
        "model": {"m": 3, "n": 6},
        "teacher": {"activation": "binary"},
        "train": {"steps": 30, "record_every": 10, "lr": 0.05, "ste": "relu"},
        "axes": {"bits": [1, 2], "rho": [0.0, 0.1], "angle": [0.5, 2.0]},
        "plot": {"x": "angle", "y": "rho", "panels": "bits"},
        "execution": {"dtype": "float64"},
        "output": {"figures": False},
    }
    res = sd.sweep(raw, str(tmp_path), progress=False)
    assert list(res["axis_bits"]) == [1, 2] and list(res["axis_rho"]) == [0.0, 0.1]
    cfg = sd.parse_config(raw)
    for i in range(len(res["outcome"])):
        bits = int(res["axis_bits"][res["index_bits"][i]])
        rho = float(res["axis_rho"][res["index_rho"][i]])
        angle = float(res["axis_angle"][res["index_angle"][i]])
        st = _sweep._group_static(cfg, {"bits": bits})
        p = {k: np.float64(cfg.value(*sd._config.AXES[k])) for k in _sweep.DYNAMIC}
        p.update(angle=np.float64(angle), rho=np.float64(rho))
        v0, w0, teacher, data = _sweep.draw_problem(np.uint32(0), p, st)
        one = sd.run(v0, w0, teacher, data, ste="relu", lr=0.05, steps=30, record_every=10, quantizer=bits, rho=rho)
        np.testing.assert_allclose(res["w"][i], one.w, rtol=1e-12)
        assert res["outcome"][i] == one.outcome
        # The recorded w is quantized: 1 bit has |w_i| all equal.
        if bits == 1:
            np.testing.assert_allclose(np.abs(res["w"][i]), np.abs(res["w"][i][0]), rtol=1e-12)
    with pytest.raises(sd.ConfigError, match="train.rho"):
        sd.parse_config({**raw, "axes": {"rho": [0.0, 0.1]}})
    with pytest.raises(sd.ConfigError, match="normalized"):
        sd.parse_config({**raw, "axes": {"bits": [1]}, "train": {"rule": "normalized"}})
    with pytest.raises(sd.ConfigError, match="train.bits"):
        sd.parse_config({**raw, "axes": {}, "train": {"bits": -1}})
