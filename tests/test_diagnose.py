"""python -m pinn.diagnose through the CLI on a small network."""
import json

import pytest

from tests.conftest import REPO, run_cli


def test_diagnose_writes_rows_that_show_the_three_problems(tmp_path):
    out = tmp_path / "diag"
    p = run_cli(["model.depth=3", "model.width=12", "n_points=200", "passes=50",
                 f"hydra.run.dir={out}"], cwd=REPO, module="pinn.diagnose")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((out / "diagnose.json").read_text())
    assert len(rows) == 4 * 3 + 3
    for r in rows:
        assert set(r) == {"mode", "stats", "U", "Ux", "Ut", "Uxx", "Utt", "grad_cosine"}
    get = {(r["mode"], r["stats"]): r for r in rows}
    exact_det = get[("detached", "exact calibration")]
    assert max(exact_det[k] for k in ("U", "Ux", "Ut", "Uxx", "Utt")) <= 1e-12
    assert exact_det["grad_cosine"] == pytest.approx(1, abs=1e-12)
    coupled = get[("batch", "exact calibration")]
    assert coupled["U"] <= 1e-12 and coupled["Uxx"] == pytest.approx(1, abs=1e-9)
    torch_cum = get[("torch BatchNorm1d", "cumulative, 50 passes")]
    assert torch_cum["U"] > 1e-4  # unbiased running variance: never exact
    assert get[("detached", "1 pass, momentum 0.1")]["U"] > 0.5
    assert "grad cos" in p.stdout and "exact calibration" in p.stdout


def test_diagnose_refuses_a_network_without_bn(tmp_path):
    p = run_cli(["model.norm=none", f"hydra.run.dir={tmp_path / 'd'}"], cwd=REPO,
                module="pinn.diagnose")
    assert p.returncode != 0 and "model.norm='none' is not allowed here" in p.stderr


def test_diagnose_refuses_a_thread_count_below_one_and_leaves_no_folder(tmp_path):
    from tests.conftest import run_cli

    r = run_cli(["num_threads=0"], cwd=tmp_path, module="pinn.diagnose")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: num_threads=0 is not allowed: null or an integer >= 1"]
    assert not (tmp_path / "outputs").exists()


# -- networks of problems in any dimension -----------------------------------------------------
SMALL = {"model": {"depth": 3, "width": 12}, "n_points": 120, "passes": 20}


def _cfg(**kw):
    from omegaconf import OmegaConf

    from pinn.diagnose import DiagnoseConfig

    cfg = OmegaConf.merge(OmegaConf.structured(DiagnoseConfig), SMALL, kw)
    cfg.model.norm = "batch"
    cfg.model.activation = "gelu"
    return cfg


def test_the_study_of_a_problem_in_xt_equals_the_classic_study_on_its_box():
    """problem=burgers (one output on [-1, 1] x [0, 1], the reverse-mode N-D engine) against
    the (x, t) study with the same box and n_out=1 (pinn.derivatives): the same fields. (The
    gradient cosines differ: the classic loss also has Utt, which Burgers does not read.)"""
    from pinn.diagnose import study

    rows = study(_cfg(problem="burgers"), device=None)
    classic = study(_cfg(n_out=1, x_min=-1.0, x_max=1.0, t_min=0.0, t_max=1.0))
    names = {"u": "U", "u_x": "Ux", "u_t": "Ut", "u_xx": "Uxx"}
    assert len(rows) == len(classic) == 15
    for r, c in zip(rows, classic):
        assert set(r) == {"mode", "stats", "grad_cosine", *names}
        for k, k1 in names.items():
            assert r[k] == pytest.approx(c[k1], rel=1e-9, abs=1e-13), (r["mode"], r["stats"], k)
        if r["mode"] == "frozen":
            assert r["grad_cosine"] == pytest.approx(1, abs=1e-12)


def test_diagnose_studies_the_network_of_a_2d_system(tmp_path):
    out = tmp_path / "diag"
    p = run_cli(["problem=kovasznay", "model.depth=3", "model.width=12", "n_points=150",
                 "passes=20", f"hydra.run.dir={out}"], cwd=REPO, module="pinn.diagnose")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((out / "diagnose.json").read_text())
    fields = {"u", "v", "p", "u_x", "u_y", "v_x", "v_y", "p_x", "p_y", "u_xx", "u_yy", "v_xx",
              "v_yy"}
    assert all(set(r) == {"mode", "stats", "grad_cosine", *fields} for r in rows)
    get = {(r["mode"], r["stats"]): r for r in rows}
    exact_det = get[("detached", "exact calibration")]
    assert max(exact_det[k] for k in fields) <= 1e-12
    coupled = get[("batch", "exact calibration")]
    assert coupled["u"] <= 1e-12 and coupled["v_yy"] == pytest.approx(1, abs=1e-9)
    assert "kovasznay's network" in p.stdout and "v_yy" in p.stdout


def test_the_study_of_kdv_covers_its_third_derivative():
    from pinn.diagnose import study

    rows = study(_cfg(problem="kdv", torch_reference=False, passes=2))
    assert "u_xxx" in rows[0]
    frozen = [r for r in rows if r["mode"] == "frozen"]
    assert all(r["u_xxx"] == 0 and r["grad_cosine"] == pytest.approx(1) for r in frozen)


def test_an_unknown_problem_is_refused_in_one_line_without_a_folder(tmp_path):
    r = run_cli(["problem=kovasnay"], cwd=tmp_path, module="pinn.diagnose")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: problem=kovasnay is not allowed: one of")
    assert "did you mean kovasznay" in err[0]
    assert not (tmp_path / "outputs").exists()
