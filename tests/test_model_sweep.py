"""Sweeps of the ReLU models (model.kind = "relu_network" / "relu_neuron")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stedyn as sd
from stedyn import _sweep


def test_relu_neuron_sweep_matches_direct_runs(tmp_path):
    cfg = {"model": {"kind": "relu_neuron", "n": 8}, "train": {"steps": 300, "lr": 0.05, "record_every": 50},
           "execution": {"dtype": "float64"},
           "axes": {"depth": [1, 3], "w_norm": [0.1, 1.5], "angle": [0.5, 2.5], "seed": {"range": 2}}}
    res = sd.sweep(cfg, out=str(tmp_path / "s"), progress=False)
    assert (tmp_path / "s" / "results.npz").exists() and (tmp_path / "s" / "heatmap.png").exists()
    loaded = sd.load_results(str(tmp_path / "s"))
    np.testing.assert_array_equal(loaded["outcome"], res["outcome"])
    assert res["w"].shape == (16, 8) and res["v"].shape[1] >= 2
    # one configuration redone by hand: same draw, sd.run on the model
    names = list(res["axis_names"])
    for c in (0, 13):
        p = {a: res["axis_" + a][res["index_" + a][c]] for a in names}
        st = dict(kind="relu_neuron", n=8, hidden=2, depth=int(p["depth"]), dtype="float64", seed=0, t_w_norm=1.0)
        model, params0 = _sweep.draw_model_problem(int(p["seed"]), {"angle": p["angle"], "w_norm": p["w_norm"],
                                                                    "sigma": 1.0}, st)
        R = sd.run(model, params0, lr=0.05, steps=300, record_every=50)
        np.testing.assert_allclose(res["final_loss"][c], float(R.final["loss"]), rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(res["final_stationary_dist"][c], float(R.final["teacher_dist"]), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(res["final_angle"][c], float(R.final["angle"]), rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(res["w0"][c], np.asarray(params0["w"]), rtol=1e-12)
        assert res["outcome"][c] == R.outcome
        np.testing.assert_allclose(np.linalg.norm(res["w0"][c]), p["w_norm"], rtol=1e-12)


def test_relu_network_sweep_float32():
    res = sd.sweep({"model": {"kind": "relu_network", "n": 5}, "train": {"steps": 1500, "lr": 0.5},
                    "axes": {"hidden": [1, 2], "angle": [0.5, 2.0]}}, progress=False)
    assert res["w"].shape == (4, 10)  # (units x n) flattened, padded to the widest group
    assert np.all(np.isnan(res["w"][res["index_hidden"] == 0][:, 5:]))
    assert list(res["outcome"]) == ["global_min"] * 4
    assert res["final_loss"].dtype == np.float32


@pytest.mark.parametrize("cfg,match", [
    ({"model": {"kind": "relu_network"}, "train": {"rule": "coarse"}}, "train.rule = 'true' only"),
    ({"model": {"kind": "relu_neuron"}, "axes": {"ste": ["relu"]}}, "do not apply to model.kind"),
    ({"axes": {"depth": [1, 2]}}, "axes.depth needs model.kind = 'relu_neuron'"),
    ({"model": {"kind": "mlp"}}, "model.kind must be one of"),
    ({"model": {"kind": "relu_neuron"}, "data": {"kind": "mixture"}}, "needs data.kind = 'gaussian'"),
])
def test_model_sweep_config_errors(cfg, match):
    with pytest.raises(sd.ConfigError, match=match):
        sd.parse_config(cfg)
