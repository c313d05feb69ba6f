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
