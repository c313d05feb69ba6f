"""``python -m pinn.accuracy``: the table is built from the run folders' metrics.json."""
from __future__ import annotations

import json

import pytest

from pinn.accuracy import full_suite, main, quick_suite

FAST = ["trainer.steps=20", "trainer.qn_steps=10", "model.depth=2", "model.width=8",
        "sampler.n_interior=64", "sampler.n_initial=16", "sampler.n_boundary=16",
        "pde.eval_nx=32", "pde.eval_nt=16", "derivatives.compile=false", "log.figures=false",
        "trainer.num_threads=1"]


def test_quick_suite_table_equals_the_runs_metrics(tmp_path, capsys):
    out = tmp_path / "acc"
    assert main(["--quick", "--cases", "heat_default,advection_default", "--out", str(out),
                 "--override", *FAST]) == 0
    rows = json.loads((out / "accuracy.json").read_text())["rows"]
    assert [r["case"] for r in rows] == ["heat_default", "advection_default"]
    for r in rows:
        run = out / r["case"] / "seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert r["l2_rel"]["u"]["median"] == metrics["error/l2_rel/u"]
        assert r["l2_rel"]["u"]["worst"] == metrics["error/l2_rel/u"]
        assert r["wall_time_s"] == metrics["wall_time_s"]
        assert r["iterations"] == metrics["steps"] == 30
        assert r["parameters"] == 2 * 8 + 8 + 8 * 8 + 8 + 8 + 1  # 2 -> 8 -> 8 -> 1
        assert r["completed"] == 1 and r["runs"] == [str(run)]
    table = (out / "accuracy.md").read_text().splitlines()
    assert table[2].startswith("| problem | recipe | seeds | relative L2 median (worst) |")
    assert table[4].startswith("| heat | default | 0 | u ")
    assert "| advection | default | 0 |" in table[5]
    # A second call keeps the finished runs and rebuilds the same table.
    assert main(["--quick", "--cases", "heat_default", "--out", str(out), "--override",
                 *FAST]) == 0
    assert "kept" in capsys.readouterr().out


def test_list_and_bad_input(capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "burgers_precise" in listed and "experiment=precise" in listed
    with pytest.raises(SystemExit) as e:
        main(["--cases", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --cases: unknown case 'nope'")
    with pytest.raises(SystemExit):
        main(["--quick", "--override", "model.widht=3"])
    assert "model.widht is not a config key" in capsys.readouterr().err


def test_suites_cover_the_library_with_bn_rows():
    names = {c.name for c in full_suite()}
    for p in ("burgers", "heat", "wave", "klein_gordon", "advection", "allen_cahn", "nls"):
        assert f"{p}_precise" in names
        assert {f"{p}_bn_detached", f"{p}_bn_frozen"} <= names
    by_name = {c.name: c for c in full_suite()}
    # Each problem's BN rows use the problem's own recipe.
    assert "experiment=wave_precise" in by_name["wave_bn_frozen"].overrides
    assert "bn.freeze_at=0" in by_name["wave_bn_frozen"].overrides
    # A problem's BN rows get its budget, so the table compares at equal training time.
    for p in ("burgers", "wave"):
        budgets = {by_name[f"{p}_{r}"].minutes for r in ("precise", "bn_detached", "bn_frozen")}
        assert budgets == {8.0 if p == "wave" else 3.0}
    assert "trainer.max_minutes=8" in by_name["wave_precise"].command(0)
    assert all(len(c.seeds) == 1 for c in quick_suite())


def test_jobs_run_seeds_side_by_side_with_their_share_of_the_cores(tmp_path):
    import os
    import statistics

    from omegaconf import OmegaConf

    out = tmp_path / "acc"
    fast = [o for o in FAST if not o.startswith("trainer.num_threads=")]
    assert main(["--quick", "--cases", "heat_default", "--seeds", "0,1", "--jobs", "2",
                 "--out", str(out), "--override", *fast]) == 0
    (row,) = json.loads((out / "accuracy.json").read_text())["rows"]
    errors = []
    for seed in (0, 1):
        run = out / "heat_default" / f"seed{seed}"
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        assert cfg.trainer.num_threads == max(1, (os.cpu_count() or 1) // 2)
        assert cfg.seed == seed
        errors.append(json.loads((run / "metrics.json").read_text())["error/l2_rel/u"])
    assert errors[0] != errors[1]
    assert row["l2_rel"]["u"]["median"] == statistics.median(errors)
    assert row["l2_rel"]["u"]["worst"] == max(errors)
    assert "2 runs at a time" in (out / "accuracy.md").read_text().splitlines()[0]


def test_markdown_escapes_pipes_inside_cells():
    from pinn.accuracy import markdown

    row = {"problem": "nls", "recipe": "r", "seeds": [0], "completed": 1, "published": "1.97e-3",
           "published_source": "|h|, Raissi et al.", "l2_rel": {"h_abs": {"median": 1e-4,
                                                                         "worst": 2e-4}},
           "wall_time_s": 10.0, "compile_time_s": 1.0, "iterations": 5, "parameters": 7}
    line = markdown([row], "t").splitlines()[-1]
    assert line.count("|") - line.count("\\|") == 9  # 8 cells
    assert "\\|h\\|" in line
