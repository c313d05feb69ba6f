"""Bad command lines: one line naming the key, the value and what is allowed; exit status 2;
no run folder (pinn.cli, before Hydra starts)."""
from __future__ import annotations

import json

import pytest

from pinn.cli import CommandLineError, check_overrides, split_argv
from tests.conftest import run_cli

import pinn.diagnose  # noqa: F401  (stores the diagnose and evaluate schemas)
import pinn.evaluate  # noqa: F401
import pinn.train  # noqa: F401

CASES = [
    (["model.widht=3"], "model.widht is not a config key (did you mean model.width?); the "
                        "keys of model: depth, width, activation, norm"),
    (["+model.widht=3"], "+model.widht is not a config key (did you mean model.width?)"),
    (["model.width=abc"], "model.width='abc' is not allowed: an integer"),
    (["trainer.max_minutes=abc"], "trainer.max_minutes='abc' is not allowed: a number"),
    (["pde=burger"], "pde=burger is not allowed: one of advection, allen_cahn, burgers, "
                     "burgers_inverse, cavity, cylinder, heat, heat2d, heat_annulus, "
                     "helmholtz2d, kdv, klein_gordon, kovasznay, kuramoto_sivashinsky, "
                     "laplace_lshape, nls, poisson2d, poisson3d, poisson_holes, reaction, "
                     "taylor_green, wave (did you mean burgers?)"),
    (["experiment=precis"], "experiment=precis is not allowed: one of allen_cahn_precise, "
                            "burgers_bn, burgers_inverse, convection_precise, cylinder_precise, "
                            "heat_inverse, heat_quick, kdv_precise, "
                            "kuramoto_sivashinsky_precise, nls_precise, poisson3d_precise, "
                            "precise, raissi_burgers, reaction_precise, taylor_green_precise, "
                            "wave_precise (did you "
                            "mean precise?)"),
    (["optim.qn=ssbroydn"], "optim.qn='ssbroydn' is not allowed: one of lbfgs, bfgs, ssbfgs, "
                            "ssbroyden, lm (did you mean ssbroyden?)"),
    (["precision=float16"], "precision='float16' is not allowed: one of float32, float64"),
    (["seed=2", "trainer.stps=3"], "trainer.stps is not a config key (did you mean "
                                   "trainer.steps?)"),
    (["data.columns.u=uu"], "data.columns.u=uu: data.columns.u does not exist yet; add it "
                            "with '+': +data.columns.u=uu"),
    (["+model.width=3"], "+model.width=3: model.width exists already; set it without '+': "
                         "model.width=3"),
    (["+experiment=precise"], "experiment is chosen already by the config"),
    (["model.depth=2,x"], "model.depth='x' is not allowed: an integer (in the sweep "
                          "model.depth=2,x)"),
    (["nosuchkey=1"], "nosuchkey is not a config key; the top-level keys: model, pde"),
    (["pde=heat", "+pde.conditions.right.u=1"], "+pde.conditions.right is not a config key; "
                                                "pde.conditions is empty in this config"),
]


@pytest.mark.parametrize("overrides,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_each_mistake_is_one_line_naming_key_value_and_what_is_allowed(overrides, message):
    with pytest.raises(CommandLineError) as e:
        check_overrides("train", overrides)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(message) if not message.startswith("experiment") else message in text


@pytest.mark.parametrize("overrides", [
    [], ["pde=heat", "pde.params.kappa=0.1"], ["+pde.params.extra=1"], ["seed=1,2,3"],
    ["experiment=precise", "pde=wave"], ["hydra.run.dir=/tmp/x", "model.width=8"],
    ["optim.lr=1e-3,3e-3", "model.depth=range(2,5)"],
    ["pde=kovasznay", "+pde.conditions.top.p=0"]])  # a key added to the problem chosen
def test_valid_command_lines_pass(overrides):
    check_overrides("train", overrides)


def test_evaluate_and_diagnose_are_checked_against_their_own_schemas():
    with pytest.raises(CommandLineError, match=r"^nxx is not a config key \(did you mean nx\?\)"):
        check_overrides("evaluate", ["run_dir=x", "nxx=3"])
    with pytest.raises(CommandLineError, match=r"^n_point is not a config key \(did you mean "
                                               r"n_points\?\)"):
        check_overrides("diagnose", ["n_point=3"])
    check_overrides("evaluate", ["run_dir=x", "nx=64", "device=cpu"])


def test_config_dir_problems_are_found():
    from tests.conftest import REPO
    check_overrides("train", ["pde=advection_diffusion"], config_dir=str(REPO / "examples"))
    with pytest.raises(CommandLineError, match="pde=advection_diffusio is not allowed: one of "
                                               ".*advection_diffusion"):
        check_overrides("train", ["pde=advection_diffusio"], config_dir=str(REPO / "examples"))


def test_split_argv_separates_flags_from_overrides():
    assert split_argv(["-m", "--config-dir", "ex", "seed=1", "-cn=train"]) == (
        ["seed=1"], "ex", "train", False)
    assert split_argv(["--help"])[3] is True


@pytest.mark.parametrize("module,args,expected", [
    ("pinn.train", ["+model.widht=3"], "error: +model.widht is not a config key (did you mean "
                                       "model.width?)"),
    ("pinn.train", ["-m", "seed=0,1", "pde=burger"], "error: pde=burger is not allowed"),
    ("pinn.evaluate", ["run_dir=x", "nxx=3"], "error: nxx is not a config key"),
])
def test_cli_prints_one_line_exits_2_and_leaves_no_run_folder(tmp_path, module, args, expected):
    r = run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, module=module)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), r.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()
    assert not (tmp_path / "outputs").exists()


def test_a_run_refused_in_the_run_leaves_no_empty_folders(tmp_path):
    """A mistake found after Hydra made the default run folder (outputs/<date>/<time>-<pde>):
    the folder goes, and so do the date folder and outputs/ that it leaves empty; a folder
    holding another run is never touched."""
    bad = "pde.residual=u_t+nosuch"  # found when the problem is built, inside the run
    r = run_cli([bad, "trainer.steps=1"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: pde.residual: unknown name"), \
        r.stderr
    assert not (tmp_path / "outputs").exists()
    kept = tmp_path / "outputs" / "2026-01-01" / "other-run"
    kept.mkdir(parents=True)
    (kept / "metrics.json").write_text("{}")
    r = run_cli([bad, f"hydra.run.dir={kept}"], cwd=tmp_path)
    assert r.returncode == 2
    assert (kept / "metrics.json").is_file()


def test_a_resumed_run_leaves_no_fresh_folder_behind(tmp_path):
    """Hydra makes a fresh run folder before the run knows it resumes another; the resume keeps
    its overrides beside the run's own, appends its log to the run's train.log, and removes
    the fresh folder."""
    small = ["pde=heat", "model.depth=2", "model.width=8", "sampler.n_interior=64",
             "sampler.n_initial=16", "sampler.n_boundary=16", "trainer.qn_steps=0",
             "trainer.progress=false", "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false"]
    r = run_cli([*small, "trainer.steps=3"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = [p for p in (tmp_path / "outputs").glob("*/*")]
    r = run_cli([*small, "trainer.steps=5", f"trainer.resume={run}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [p for p in (tmp_path / "outputs").glob("*/*")] == [run]
    assert (run / ".hydra" / "overrides.resume-3.yaml").read_text().count("trainer.steps=5") == 1
    assert json.loads((run / "metrics.json").read_text())["steps"] == 5
    # Both processes logged into the run's train.log (each logs its allocator setting once).
    assert (run / "train.log").read_text().count("taylor: allocator:") == 2


@pytest.mark.parametrize("module,args", [("pinn.accuracy", ["--list"]),
                                         ("pinn.train", ["--help"]),
                                         ("pinn.data", ["--help"])])
def test_output_into_a_closed_pipe_ends_quietly(module, args):
    """``python -m pinn.accuracy --list | head``: a reader that has gone (here: closed before
    anything is written) ends the program with status 1 and no traceback."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, stdout=write,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr, p.stderr


@pytest.mark.parametrize("args,expected", [
    (["model.width=abc"], "error: model.width='abc' is not allowed: an integer"),
    (["model.width=0"], "error: model.width=0 is not allowed: an integer >= 1"),
    (["device=gpu"], "error: device='gpu' is not allowed: auto, cpu, cuda or cuda:N")])
def test_a_bad_command_line_is_refused_before_torch_loads(tmp_path, args, expected):
    """`python -m pinn.train`: a key, type or value mistake is answered from the composed config
    alone (pinn.cli.check_before_imports with pinn.validation.validate), before the import of torch
    and the trainer that a run needs."""
    import subprocess
    import sys

    from tests.conftest import REPO

    driver = ("import runpy, sys\n"
              "sys.argv = ['pinn.train', *sys.argv[1:]]\n"
              "try:\n"
              "    runpy.run_module('pinn.train', run_name='__main__', alter_sys=True)\n"
              "except SystemExit as e:\n"
              "    print(e.code, 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", driver, *args, f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["2", "False"], (p.stdout, p.stderr)
    assert p.stderr.strip().splitlines() == [expected] or \
        p.stderr.strip().startswith(expected), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
