"""python -m pinn.timeline: error against wall time from runs' TensorBoard logs."""
import csv

import pytest
from torch.utils.tensorboard import SummaryWriter

from pinn.timeline import curve, main

T0 = 1_700_000_000.0


def fake_run(folder, points):
    """A run folder whose logs hold loss/total at step 0 (time T0) and error/l2_rel/u at
    ``points`` [(seconds after T0, step, value)]."""
    w = SummaryWriter(str(folder / "tensorboard"))
    w.add_scalar("loss/total", 1.0, 0, walltime=T0)
    for seconds, step, value in points:
        w.add_scalar("error/l2_rel/u", value, step, walltime=T0 + seconds)
    w.close()
    return folder


def test_the_curve_is_in_minutes_since_the_first_logged_step(tmp_path):
    run = fake_run(tmp_path / "a", [(120.0, 1000, 1e-3), (30.0, 500, 1e-2), (300.0, 2000, 1e-5)])
    got = curve(run, "error/l2_rel/u")
    assert [(round(m, 6), s) for m, s, _ in got] == [(0.5, 500), (2.0, 1000), (5.0, 2000)]
    assert [v for _, _, v in got] == pytest.approx([1e-2, 1e-3, 1e-5], rel=1e-6)


def test_the_command_writes_a_figure_and_its_numbers(tmp_path, capsys):
    a = fake_run(tmp_path / "a", [(60.0, 100, 1e-3)])
    b = fake_run(tmp_path / "b", [(30.0, 10, 1e-4), (90.0, 20, 1e-6)])
    out = tmp_path / "fig" / "t.png"
    assert main([str(a), str(b), "--labels", "qn", "lm", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [(r["label"], r["step"]) for r in rows] == [("qn", "100"), ("lm", "10"), ("lm", "20")]
    assert float(rows[2]["minutes"]) == pytest.approx(1.5)


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "no TensorBoard logs"),
    (["{a}", "--metric", "error/l2_rel/v"], "no error/l2_rel/v in its logs; it has error/l2_rel/u"),
    (["{a}", "--labels", "x", "y"], "--labels: 2 labels for 1 runs"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    a = fake_run(tmp_path / "a", [(60.0, 100, 1e-3)])
    args = [x.format(a=a, missing=tmp_path / "nothing") for x in args]
    assert main([*args, "--out", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
