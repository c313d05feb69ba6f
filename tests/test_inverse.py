"""Inverse problems: learned coefficients (parametrizations, residual, logs, checkpoints,
resume), observation files (each format, each refusal), the synthetic-data generator, and the
recovery of the heat equation's diffusion coefficient."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pinn.api import load_run
from pinn.data import DataError, Observations, load_observations, read_table, synthesize, \
    write_table
from pinn.derivatives import compute_derivatives
from pinn.losses import loss_terms
from pinn.nn import build_model
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.pdes.unknowns import LearnedParameters, Unknown, parse_unknowns
from pinn.train import build_trainer
from tests.conftest import compose_cfg, run_cli
from tests.test_faults import final_parameters, stop_and_resume

HEAT = ["pde=heat", "precision=float64", "model.depth=2", "model.width=16",
        "trainer.progress=false", "sampler.n_interior=256", "sampler.n_initial=64",
        "sampler.n_boundary=64", "pde.eval_nx=41", "pde.eval_nt=21", "log.figures=false"]
KAPPA = ["+pde.unknown.kappa={init: 0.3, transform: log}"]


def data_cfg(**kw):
    base = {"file": None, "columns": {}, "outputs": None, "noise_column": None,
            "weight_column": None, "allow_unobserved": False}
    return OmegaConf.create({**base, **kw})


@pytest.fixture
def heat_file(tmp_path):
    """200 clean observations of the heat equation (kappa = 0.1) as .npz."""
    pde = build_pde(compose_cfg(["pde=heat"]).pde)
    path = tmp_path / "heat.npz"
    write_table(path, synthesize(pde, 200, 0.0, seed=0, nx=41, nt=21))
    return path


# -- parametrizations -------------------------------------------------------------------------
@pytest.mark.parametrize("unknown", [Unknown("a", 0.7), Unknown("a", 2.5e8, scale=1e8),
                                     Unknown("a", 0.05, "log"),
                                     Unknown("a", 3e-3, "log", scale=1e-2)])
def test_the_gradient_of_a_transformed_coefficient_matches_finite_differences(unknown):
    learned = LearnedParameters({"a": unknown})
    value = learned.values()["a"]
    assert value.item() == pytest.approx(unknown.init, rel=1e-14)  # starts where asked
    (grad,) = torch.autograd.grad(value, [learned.theta["a"]])
    h = 1e-6
    with torch.no_grad():
        theta = learned.theta["a"].item()
        learned.theta["a"].fill_(theta + h)
        up = float(learned.values()["a"])
        learned.theta["a"].fill_(theta - h)
        down = float(learned.values()["a"])
    assert float(grad) == pytest.approx((up - down) / (2 * h), rel=1e-8)


@pytest.mark.parametrize("node, words", [
    ({"a": {"init": 1.0, "transform": "exp"}}, "pde.unknown.a.transform=exp is not allowed"),
    ({"a": {"init": -1.0, "transform": "log"}}, "init / scale must be > 0"),
    ({"a": {"transform": "log"}}, "pde.unknown.a.init is missing"),
    ({"a": {"init": 1.0, "sacle": 2}}, "pde.unknown.a.sacle is not allowed"),
    ({"a": {"init": 1.0, "scale": 0}}, "scale non-zero"),
])
def test_bad_unknown_specifications_are_refused(node, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.").replace("(", r"\(")):
        parse_unknowns(node, {})


@pytest.mark.parametrize("overrides, words", [
    (["+pde.unknown.zeta=1"], "zeta does not appear in pde.residual"),
    (["pde.residual=u_t - kappa*k*u_xx/2", "+pde.unknown.k={init: 2}"],
     "k appears in pde.initial"),
    (["+pde.params.kk=kappa*2", "+pde.unknown.kappa=0.3"], "pde.params.kk is computed"),
])
def test_only_coefficients_of_the_residual_can_be_learned(overrides, words):
    with pytest.raises(ValueError, match=words):
        build_pde(compose_cfg(["pde=heat", *overrides]).pde)


def test_the_residual_with_learned_coefficients_equals_the_configured_one():
    cfg = compose_cfg(["pde=burgers_inverse", "+pde.unknown.lambda1=1.0",
                       "+pde.unknown.lambda2={init: 0.0031830988618379067, transform: log}",
                       "data.allow_unobserved=true"])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    t = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
    d = compute_derivatives(model, x, t, pde.derivatives)
    learned = model.pde_params.values()
    assert torch.allclose(pde.residual(x, t, d, learned), pde.residual(x, t, d),
                          rtol=1e-14, atol=1e-16)
    moved = {"lambda1": learned["lambda1"] * 2, "lambda2": learned["lambda2"]}
    assert not torch.allclose(pde.residual(x, t, d, moved), pde.residual(x, t, d))


# -- observation files ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npz", ".csv", ".mat"])
def test_each_format_reads_back_what_was_written(tmp_path, suffix):
    rng = np.random.default_rng(1)
    cols = {"x": rng.uniform(-1, 1, 50), "t": rng.uniform(0, 1, 50), "u": rng.normal(size=50)}
    write_table(tmp_path / f"d{suffix}", cols)
    back = read_table(tmp_path / f"d{suffix}")
    for k, v in cols.items():
        assert np.array_equal(back[k], v), k  # every digit, also through CSV text
    pde = build_pde(compose_cfg(["pde=heat"]).pde)
    obs = load_observations(data_cfg(file=str(tmp_path / f"d{suffix}")), pde)
    assert obs.names == ("u",) and obs.columns == (0,) and len(obs) == 50
    assert torch.equal(obs.values[:, 0], torch.as_tensor(cols["u"]))


def test_columns_are_mapped_and_a_subset_of_outputs_is_observed(tmp_path):
    nls = build_pde(compose_cfg(["pde=nls"]).pde)
    path = tmp_path / "nls.npz"
    np.savez(path, xx=np.zeros(3), t=np.ones(3), u=np.arange(3.0), sd=np.array([1.0, 2.0, 4.0]))
    obs = load_observations(data_cfg(file=str(path), columns={"x": "xx"}, noise_column="sd"),
                            nls)
    assert obs.names == ("u",) and obs.columns == (0,)  # v is not observed
    w = 1 / np.array([1.0, 4.0, 16.0])
    assert np.allclose(obs.weights[:, 0].numpy(), w / w.mean())
    pred = torch.stack([torch.tensor([0.0, 0.0, 0.0]), torch.tensor([9.0, 9.0, 9.0])], dim=1)
    want = np.mean((w / w.mean()) * np.arange(3.0) ** 2)
    assert float(obs.misfit(pred.double())) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("make, cfg, words", [
    (None, {}, "no such file"),
    (lambda p: p.write_bytes(b"not a zip"), {}, "cannot read it"),
    (lambda p: np.savez(p, x=[0.0], t=[0.5]), {}, "no column for any output"),
    (lambda p: np.savez(p, x=[0.0], u=[1.0]), {}, "no column 't' for t"),
    (lambda p: np.savez(p, x=[0.0, np.nan], t=[0.5, 0.5], u=[1.0, 1.0]), {},
     "column x has 1 non-finite value(s) (NaN or inf), the first in row 1"),
    (lambda p: np.savez(p, x=[0.0, 3.0], t=[0.5, 0.5], u=[1.0, 1.0]), {},
     "outside the domain, the first in row 1: x=3 is not in [-1, 1]"),
    (lambda p: np.savez(p, x=[0.0, 0.1], t=[0.5], u=[1.0, 1.0]), {}, "different lengths"),
    (lambda p: np.savez(p, x=[0.0], t=[0.5], u=[1.0]), {"noise_column": "sd"},
     "data.noise_column=sd: no such column"),
    (lambda p: np.savez(p, x=[0.0], t=[0.5], u=[1.0], sd=[0.0]), {"noise_column": "sd"},
     "standard deviations must be > 0"),
    (lambda p: np.savez(p, x=[0.0], t=[0.5], u=[1.0]), {"outputs": ["w"]},
     "data.outputs: w is not an output of heat"),
])
def test_unusable_observations_are_refused_naming_file_and_column(tmp_path, make, cfg, words):
    path = tmp_path / "obs.npz"
    if make is not None:
        make(path)
    pde = build_pde(compose_cfg(["pde=heat"]).pde)
    with pytest.raises(DataError) as e:
        load_observations(data_cfg(file=str(path), **cfg), pde)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_csv_and_format_refusals(tmp_path):
    pde = build_pde(compose_cfg(["pde=heat"]).pde)
    (tmp_path / "a.csv").write_text("x,t,u\n0.1,0.2,abc\n")
    with pytest.raises(DataError, match="column u, line 2: 'abc' is not a number"):
        load_observations(data_cfg(file=str(tmp_path / "a.csv")), pde)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="unknown format .txt"):
        load_observations(data_cfg(file=str(tmp_path / "a.txt")), pde)


# -- the generator ----------------------------------------------------------------------------
def test_synthetic_observations_are_seeded_exact_and_as_noisy_as_asked():
    pde = build_pde(compose_cfg(["pde=heat"]).pde)
    a = synthesize(pde, 4000, 0.0, seed=3, nx=201, nt=101)
    b = synthesize(pde, 4000, 0.0, seed=3, nx=201, nt=101)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["x"], synthesize(pde, 4000, 0.0, seed=4, nx=201, nt=101)["x"])
    exact = pde.exact(a["x"], a["t"])[..., 0]
    assert np.max(np.abs(a["u"] - exact)) < 1e-12
    assert len({(x, t) for x, t in zip(a["x"], a["t"])}) == 4000  # distinct grid nodes
    noisy = synthesize(pde, 4000, 0.01, seed=3, nx=201, nt=101)
    assert np.array_equal(noisy["x"], a["x"])  # same points, noise added
    ratio = np.std(noisy["u"] - a["u"]) / np.std(a["u"])
    assert ratio == pytest.approx(0.01, rel=0.05)


def test_the_data_command_writes_a_file_and_refuses_bad_input(tmp_path, capsys):
    from pinn.data import main

    p = run_cli(["pde=heat", "n=50", "noise=0.02", "seed=1", "out=obs.csv"], cwd=tmp_path,
                module="pinn.data")
    assert p.returncode == 0, p.stderr
    table = read_table(tmp_path / "obs.csv")
    assert set(table) == {"x", "t", "u"} and table["x"].size == 50
    q = run_cli(["pde=haet", "out=a.npz"], cwd=tmp_path, module="pinn.data")  # one as a process
    assert q.returncode == 2 and q.stderr.strip().splitlines() == [
        q.stderr.strip()] and "pde=haet is not allowed" in q.stderr
    capsys.readouterr()
    for args, words in ((["pde=heat", "n=5"], "out is missing"),
                        (["pde=heat", "n=0", "out=a.npz"], "n=0 is not allowed"),
                        (["pde=heat", "out=a.txt"], "unknown format"),
                        (["pde=heat", "nn=3", "out=a.npz"], "nn is not a key")):
        assert main(args) == 2  # in process: the command's own code, without start-up
        err = capsys.readouterr().err
        assert words in err and len(err.splitlines()) == 1, err


# -- training ---------------------------------------------------------------------------------
def test_a_learned_coefficient_without_observations_is_refused(tmp_path):
    p = run_cli([*HEAT, *KAPPA, "trainer.steps=2", "trainer.qn_steps=0",
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("error: pde.unknown.kappa: a learned coefficient needs "
                               "observations") and len(p.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_bad_data_file_stops_the_run_before_training(tmp_path):
    np.savez(tmp_path / "bad.npz", x=[0.0], t=[5.0], u=[1.0])
    p = run_cli([*HEAT, *KAPPA, f"data.file={tmp_path / 'bad.npz'}",
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert p.returncode == 2 and "t=5 is not in [0, 1]" in p.stderr
    assert len(p.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_the_heat_diffusion_coefficient_is_recovered(tmp_path, heat_file):
    """kappa = 0.1 from 200 clean observations, starting at 0.3: within 0.3% after 300 Adam
    steps and 200 quasi-Newton iterations (measured: 2.5e-4 to 4.3e-4 over seeds 0-2)."""
    cfg = compose_cfg([*HEAT, *KAPPA, f"data.file={heat_file}", "trainer.steps=300",
                       "trainer.qn_steps=200", "trainer.eval_every=100", "optim.lr=1e-2"])
    tr = build_trainer(cfg, RunPaths(tmp_path / "run"))
    metrics = tr.fit()
    assert metrics["status"] == "completed" and metrics["data_points"] == 200
    assert metrics["params/kappa/rel_error"] < 3e-3, metrics["params/kappa"]
    assert metrics["params/kappa/rel_error"] == pytest.approx(
        abs(metrics["params/kappa"] - 0.1) / 0.1, rel=1e-12)
    assert metrics["loss/data"] < 1e-4


def test_learned_coefficients_are_logged_saved_and_loaded(tmp_path, heat_file):
    run_dir = tmp_path / "run"
    p = run_cli([*HEAT, *KAPPA, f"data.file={heat_file}", "trainer.steps=20",
                 "trainer.qn_steps=5", "trainer.log_every=5", f"hydra.run.dir={run_dir}"],
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model, cfg = load_run(run_dir)
    assert model.pde_params.as_floats()["kappa"] == metrics["params/kappa"]
    assert "loss/data" in metrics and metrics["data_points"] == 200
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tensorboard"))
    ea.Reload()
    steps = [e.step for e in ea.Scalars("params/kappa")]
    assert steps == [5, 10, 15, 20, 25]  # at each logging step, both stages
    assert ea.Scalars("params/kappa")[-1].value == pytest.approx(metrics["params/kappa"],
                                                                 rel=1e-6)
    assert "loss/data" in ea.Tags()["scalars"]


def test_resume_through_a_learned_coefficient_is_bitwise(tmp_path, heat_file):
    overrides = [*HEAT, *KAPPA, f"data.file={heat_file}", "trainer.steps=10",
                 "trainer.qn_steps=8", "trainer.checkpoint_every=3", "trainer.eval_every=100",
                 "optim.qn=ssbroyden", "sampler.resample_every=5"]
    full = build_trainer(compose_cfg(overrides), RunPaths(tmp_path / "full"))
    assert full.fit()["status"] == "completed"
    for stop_at in (6, 13):  # in Adam, in the quasi-Newton stage
        resumed = stop_and_resume(overrides, tmp_path / f"stop{stop_at}", stop_at)
        assert all(torch.equal(a, b) for a, b in
                   zip(final_parameters(resumed), final_parameters(full)))
        assert torch.equal(resumed.model.pde_params.theta["kappa"],
                           full.model.pde_params.theta["kappa"])


def test_the_divergence_log_of_a_bn_network_covers_the_data_term(tmp_path, heat_file):
    cfg = compose_cfg([*HEAT, *KAPPA, f"data.file={heat_file}", "model.norm=batch",
                       "bn.mode=detached", "trainer.steps=4", "trainer.qn_steps=0",
                       "log.divergence_every=2", "log.divergence_points=32"])
    tr = build_trainer(cfg, RunPaths(tmp_path / "run"))
    metrics = tr.fit()
    assert "divergence/loss/data/rel" in metrics
    terms = loss_terms(tr.model, tr.pde, tr.batch, data=tr.data)
    assert set(terms) == {"res", "ic", "bc", "data"}
    assert isinstance(tr.data, Observations) and tr.data.x.dtype == torch.float64
