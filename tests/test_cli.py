"""The real command line, in subprocesses: a short run, a multirun, and reloading a run."""
import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import pinn
from pinn.pdes import build_pde
from tests.conftest import REPO, run_cli

SMALL = ["trainer.steps=30", "trainer.qn_steps=5", "trainer.log_every=5", "trainer.eval_every=15",
         "trainer.progress=false", "sampler.n_interior=128", "sampler.n_initial=32",
         "sampler.n_boundary=32", "model.depth=2", "model.width=16", "pde.eval_nx=41",
         "pde.eval_nt=21"]


@pytest.fixture(scope="module")
def heat_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "heat"
    p = run_cli(["pde=heat", "precision=float64", *SMALL, f"hydra.run.dir={run_dir}"], cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir, p


def test_run_folder_has_every_artifact(heat_run):
    run_dir, p = heat_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("loss/res", "loss/ic", "loss/bc", "loss/total", "error/l2_rel/u", "wall_time_s",
                "steps_per_s", "status"):
        assert key in metrics, key
    assert metrics["steps"] == 35 and metrics["status"] == "completed"
    ea = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    for tag in ("loss/res", "loss/ic", "loss/bc", "adam/lr", "speed/adam_steps_per_s",
                "weight/res", "error/l2_rel/u"):
        assert tag in scalars, tag
    # Loss terms are logged through the quasi-Newton stage too (steps 31..35).
    assert max(e.step for e in ea.Scalars("loss/res")) == 35
    assert [e.step for e in ea.Scalars("error/l2_rel/u")] == [15, 30, 35]
    assert "prediction/u" in ea.Tags()["images"]
    # HParams summary written into the run itself (not a timestamped sub-run), with the
    # problem among its columns and only the headline metrics as final/* scalars.
    content = ea.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in content
    assert b"pde.name" in content["_hparams_/session_start_info"]
    assert b"heat" in content["_hparams_/session_start_info"]
    assert b"bn.mode" not in content["_hparams_/session_start_info"]  # no BN in this network
    finals = sorted(t for t in scalars if t.startswith("final/"))
    assert finals == ["final/error/l2_rel/u", "final/loss/total", "final/steps_per_s",
                      "final/wall_time_s"]
    # The printed summary is in the text tab.
    assert "summary/text_summary" in ea.Tags()["tensors"]
    assert "run folder:" in p.stdout and "error/l2_rel/u" in p.stdout


def test_metrics_error_equals_independent_evaluation(heat_run):
    """Reload the run and compare with the closed form, computed here without pinn's grid code."""
    run_dir, _ = heat_run
    model, cfg = pinn.load_run(run_dir)
    assert not model.training
    pde = build_pde(cfg.pde)
    x = np.linspace(-1, 1, cfg.pde.eval_nx)
    t = np.linspace(0, 1, cfg.pde.eval_nt)
    X, T = np.meshgrid(x, t)
    exact = np.sin(2 * np.pi * (X + 1) / 2) * np.exp(-0.1 * np.pi**2 * T)
    xt = torch.tensor(np.stack([X.ravel(), T.ravel()], 1), dtype=torch.float64)
    with torch.no_grad():
        pred = model(xt)[:, 0].numpy().reshape(X.shape)
    err = np.linalg.norm(pred - exact) / np.linalg.norm(exact)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert err == pytest.approx(metrics["error/l2_rel/u"], rel=1e-10)
    # Derivatives of the reloaded model through the public API.
    d = pinn.compute_derivatives(model, torch.zeros(4, 1, dtype=torch.float64),
                                 torch.zeros(4, 1, dtype=torch.float64))
    assert set(d) == {"U", "Ux", "Ut", "Uxx", "Utt"} and d["Ux"].shape == (4, 1)
    assert pde.n_out == 1


def test_multirun_gives_one_folder_per_job_with_hparams(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_cli(["-m", "pde=heat", "optim.lr=1e-3,1e-2", *SMALL, "log.figures=false",
                 f"hydra.sweep.dir={sweep}"], cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = sorted(d for d in sweep.iterdir() if d.is_dir() and (d / "metrics.json").exists())
    assert [d.name for d in jobs] == ["0", "1"]
    lrs = []
    for d in jobs:
        ea = EventAccumulator(str(d / "tensorboard"))
        ea.Reload()
        assert "_hparams_/session_start_info" in ea.PluginTagToContent("hparams"), d
        lrs.append(ea.Scalars("adam/lr")[0].value)
    assert lrs[0] == pytest.approx(1e-3, rel=1e-2) and lrs[1] == pytest.approx(1e-2, rel=1e-2)


def test_default_run_compiles_and_trains_the_same_function(tmp_path):
    """With the default settings the taylor engine is compiled; compiled and eager training
    agree to rounding in float64, and the compile time is reported apart from the training
    time. Skipped, with the reason, where no compiler works (both runs would be eager)."""
    common = ["precision=float64", *SMALL, "log.figures=false"]
    p = run_cli([*common, f"hydra.run.dir={tmp_path / 'compiled'}"], cwd=REPO, defaults=True)
    assert p.returncode == 0, p.stderr[-3000:]
    q = run_cli([*common, "derivatives.compile=false", f"hydra.run.dir={tmp_path / 'eager'}"],
                cwd=REPO)
    assert q.returncode == 0, q.stderr[-3000:]
    compiled = json.loads((tmp_path / "compiled" / "metrics.json").read_text())
    eager_run = json.loads((tmp_path / "eager" / "metrics.json").read_text())
    assert compiled["derivatives_engine"] == eager_run["derivatives_engine"] == "taylor"
    assert "compile_status" not in eager_run
    status = compiled["compile_status"]
    assert "compile_status" in p.stdout
    if not status.startswith("compiled"):
        # Both runs were eager: comparing them would show nothing. The fallback itself is
        # tested by test_missing_compiler_falls_back_to_eager_once.
        assert "eager fallback" in status
        pytest.skip(f"no working compiler on this machine: {status}")
    assert compiled["compile_time_s"] > 0
    assert compiled["train_time_s"] + compiled["compile_time_s"] < compiled["wall_time_s"]
    for key in ("loss/total", "loss/res", "error/l2_rel/u"):
        assert compiled[key] == pytest.approx(eager_run[key], rel=1e-10), key


def test_missing_compiler_falls_back_to_eager_once(tmp_path):
    """No working C++ compiler (CXX points nowhere, empty inductor cache): the default run
    completes eagerly, says why in metrics.json, warns once and counts the lost time as
    compile time."""
    env = {"CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    p = run_cli([*SMALL, "log.figures=false", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO,
                env=env, defaults=True)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "completed" and m["derivatives_engine"] == "taylor"
    assert m["compile_status"].startswith("eager fallback"), m["compile_status"]
    assert "compiler" in m["compile_status"].lower()
    assert (p.stdout + p.stderr).count("torch.compile failed") == 1
    assert m["compile_time_s"] >= 0 and np.isfinite(m["loss/total"])


def test_runs_named_after_the_same_second_get_folders_of_their_own(tmp_path):
    """The default run folder is named after the second a run starts (configs/train.yaml);
    ``pinn_run_dir`` claims it with an atomic mkdir, so a second run of the same name gets
    ``-2`` instead of overwriting the first one's files."""
    from concurrent.futures import ThreadPoolExecutor

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pinn.config import CONFIG_DIR
    from pinn.paths import claim_run_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name="train", return_hydra_config=True)
    default = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert default.startswith("${pinn_run_dir:") and "${now:%H-%M-%S}" in default

    with ThreadPoolExecutor(8) as pool:  # eight claims of one name at once
        got = list(pool.map(lambda _: claim_run_dir(str(tmp_path / "a" / "t")), range(8)))
    assert sorted(got) == sorted([str(tmp_path / "a" / "t")]
                                 + [str(tmp_path / "a" / f"t-{k}") for k in range(2, 9)])

    same = f"hydra.run.dir=${{pinn_run_dir:'{tmp_path / 'runs' / 'same'}'}}"
    for seed in (0, 1):
        p = run_cli(["pde=heat", *SMALL, "trainer.qn_steps=0", f"seed={seed}", same],
                    cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
    for folder, seed in (("same", 0), ("same-2", 1)):
        run_dir = tmp_path / "runs" / folder
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
        assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").seed == seed
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["same", "same-2"]
