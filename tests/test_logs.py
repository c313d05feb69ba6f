"""What a run reports while it trains: the logged rate and the progress lines."""
from __future__ import annotations

import time

import pinn.logs
from pinn.logs import RunLogger
from pinn.paths import RunPaths
from pinn.train import build_trainer
from tests.conftest import compose_cfg

TINY = ["model.depth=2", "model.width=8", "sampler.n_interior=64", "sampler.n_initial=16",
        "sampler.n_boundary=16", "sampler.resample_every=0", "sampler.adaptive=none",
        "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false", "log.tensorboard=false",
        "trainer.progress=false"]


def recording_trainer(cfg, tmp_path):
    """A trainer whose logged scalars are also kept in a dict {step: {tag: value}}."""
    tr = build_trainer(cfg, RunPaths(tmp_path))
    logged = {}
    scalars = tr.logger.scalars

    def record(values, step):
        logged.setdefault(step, dict(values))
        scalars(values, step)

    tr.logger.scalars = record
    return tr, logged


def test_logged_rate_is_the_last_windows_not_the_runs_average(tmp_path):
    """Steps 1-10 run at full speed, steps 11-20 sleep 0.3 s each: the rate logged at step 20
    covers only the slow window (< 3.4 steps/s), while metrics.json keeps the whole-run
    average, which the fast steps lift above it (by 1.3x or more as long as a fast step takes
    under 0.3 s, even on a loaded machine)."""
    cfg = compose_cfg([*TINY, "trainer.steps=20", "trainer.qn_steps=0", "trainer.log_every=10"])
    tr, logged = recording_trainer(cfg, tmp_path)
    step = tr.adam_step

    def slow_after_10():
        if tr.step >= 10:
            time.sleep(0.3)
        return step()

    tr.adam_step = slow_after_10
    metrics = tr.fit()
    window = logged[20]["speed/adam_steps_per_s"]
    assert window < 1 / 0.3
    assert metrics["steps_per_s"] > 1.3 * window
    assert logged[10]["speed/adam_steps_per_s"] > 2 * window
    assert "adam/lr" in logged[10] and "lr" not in logged[10]


def test_quasi_newton_rate_has_its_own_curve(tmp_path):
    cfg = compose_cfg([*TINY, "trainer.steps=4", "trainer.qn_steps=4", "trainer.log_every=2"])
    tr, logged = recording_trainer(cfg, tmp_path)
    tr.fit()
    assert "speed/adam_steps_per_s" in logged[4] and "speed/qn_steps_per_s" not in logged[4]
    assert "speed/qn_steps_per_s" in logged[6] and "adam/lr" not in logged[6]


def test_progress_into_a_file_is_plain_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pinn.logs, "LINE_SECONDS", 0.0)
    logger = RunLogger(RunPaths(tmp_path), tensorboard=False, progress=True, total_steps=100)
    assert logger.bar is None and logger.lines  # pytest's stderr is not a terminal
    logger.progress(50, 1.25e-3, 25.0, "adam")
    logger.progress(100, 1.0e-4, 20.0, "ssbroyden")
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [
        "step 50/100 (50%) adam loss=1.250e-03 25.0 steps/s ETA 0:02",
        "step 100/100 (100%) ssbroyden loss=1.000e-04 20.0 steps/s ETA 0:00"]


def test_the_eta_follows_the_time_budget_when_it_ends_the_run_first(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setattr(pinn.logs, "LINE_SECONDS", 0.0)
    logger = RunLogger(RunPaths(tmp_path), tensorboard=False, progress=True, total_steps=5000)
    logger.progress(30, 1.0, 0.5, "adam", budget_left=26.4)  # 9,940 s of steps, 26 s of budget
    logger.progress(4990, 1.0, 0.5, "adam", budget_left=26.4)  # the steps end first
    assert capsys.readouterr().err.splitlines() == [
        "step 30/5000 (1%) adam loss=1.000e+00 0.5 steps/s ETA 0:26 (time budget)",
        "step 4990/5000 (100%) adam loss=1.000e+00 0.5 steps/s ETA 0:20"]


def test_a_rate_far_below_the_stage_best_is_pointed_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pinn.logs, "LINE_SECONDS", 0.0)
    monkeypatch.setattr(pinn.logs.torch, "get_num_threads", lambda: 2)
    logger = RunLogger(RunPaths(tmp_path), tensorboard=False, progress=True, total_steps=1000)
    logger.progress(100, 1.0, 74.0, "adam")
    logger.progress(200, 1.0, 30.0, "adam")  # slower, not three times
    logger.progress(300, 1.0, 20.0, "adam")
    logger.progress(400, 1.0, 10.0, "ssbroyden")  # another stage has its own pace
    lines = capsys.readouterr().err.splitlines()
    assert "slow" not in lines[0] + lines[1] + lines[3]
    assert lines[2].endswith("20.0 steps/s ETA 0:35 [slow: 4x below this stage's 74.0 steps/s; "
                             "another process on the cores?; 2 torch threads: "
                             "trainer.num_threads=1 keeps the pace]")


def test_progress_lines_keep_their_interval(tmp_path, capsys):
    logger = RunLogger(RunPaths(tmp_path), tensorboard=False, progress=True, total_steps=100)
    for step in range(1, 50):
        logger.progress(step, 1.0, 100.0, "adam")
    assert capsys.readouterr().err == ""  # less than LINE_SECONDS (30 s) since the start


def test_terminal_bar_shows_one_rate_and_starts_without_an_eta(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    logger = RunLogger(RunPaths(tmp_path), tensorboard=False, progress=True, total_steps=100)
    assert logger.bar is not None
    logger.bar.refresh()
    first = capsys.readouterr().err
    assert "starting (the first steps compile)" in first and "ETA" not in first
    logger.progress(50, 1.25e-3, 25.0, "adam")
    logger.bar.refresh()
    logger.bar.close()
    shown = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "adam loss=1.250e-03 25.0 steps/s ETA 0:02" in shown
    assert "it/s" not in shown and "step/s" not in shown.replace("steps/s", "")


def test_figures_state_problem_step_and_error_and_show_the_error_on_a_log_scale():
    import numpy as np
    from matplotlib.colors import LogNorm

    from pinn.figures import headline, prediction_figure, pyplot, slices_figure
    plt = pyplot()
    x, t = np.linspace(-1, 1, 21), np.linspace(0, 1, 11)
    ref = np.sin(np.pi * x)[None, :] * np.exp(-t)[:, None]  # (Nt, Nx)
    pred = ref.copy()
    pred[5, 10] += 0.5  # one bad point, invisible on a linear scale of a smooth error
    title = headline("heat", 1200, pred, ref, "u", "run-a")
    rel = np.linalg.norm(pred - ref) / np.linalg.norm(ref)
    assert title == f"heat | run-a | step 1200 | relative L2 of u {rel:.2e}"
    fig = prediction_figure(x, t, pred, ref, "u", title)
    assert fig._suptitle.get_text() == title
    err_ax = fig.axes[2]
    assert "max 5.00e-01" in err_ax.get_title()
    assert isinstance(err_ax.images[0].norm, LogNorm)
    assert err_ax.images[0].norm.vmax == 0.5 and err_ax.images[0].norm.vmin == 0.5e-4
    plt.close(fig)
    fig = slices_figure(x, t, pred, ref, [0.0, 1.0], "u", title)
    assert fig._suptitle.get_text() == title
    plt.close(fig)


def test_an_exact_fit_or_an_empty_slice_still_draws_its_error_panel():
    """A slice the network fits exactly (a hard initial condition at t_min) has an error of 0
    everywhere, and a slice outside a region only nan: both draw (a flat log scale)."""
    import numpy as np

    from pinn.figures import plane_figure, pyplot
    plt = pyplot()
    h, v = np.linspace(0, 1, 5), np.linspace(0, 1, 4)
    exact = np.ones((4, 4 + 1))
    for pred, ref in ((exact, exact.copy()), (np.full_like(exact, np.nan),) * 2):
        fig = plane_figure(h, v, pred, ref, "x", "y", "u")
        assert fig.axes[2].images[0].norm.vmax == 1e-16
        plt.close(fig)


def test_a_figure_that_fails_to_draw_does_not_cost_the_run(tmp_path, monkeypatch):
    import pinn.trainer
    from pinn.paths import RunPaths
    from pinn.train import build_trainer

    def broken(*args, **kwargs):
        raise ValueError("Invalid vmin or vmax")
    monkeypatch.setattr(pinn.trainer, "output_figures", broken)
    cfg = compose_cfg(["trainer.steps=4", "trainer.qn_steps=0", "trainer.eval_every=2",
                       "model.width=8", "sampler.n_interior=64", "trainer.progress=false"])
    tr = build_trainer(cfg, RunPaths(tmp_path / "run"))
    metrics = tr.fit()
    assert metrics["status"] == "completed" and "error/l2_rel/u" in metrics
    said = [e["event"] for e in tr.events if "figures" in e["event"]]
    assert said == ["figures stopped (the run goes on): ValueError: Invalid vmin or vmax"]


def test_hparams_show_the_problem_network_and_recipe_and_command_line_keys_first():
    from pinn.train import BN_KEYS, hparam_view
    view = hparam_view(compose_cfg(["pde=heat", "optim.lr=3e-3"]), ["optim.lr", "pde"],
                       {"pde": "heat"})
    keys = list(view)
    assert keys[:2] == ["optim.lr", "pde.name"] and view["pde.name"] == "heat"
    for k in ("model.width", "model.activation", "precision", "optim.qn", "trainer.qn_steps",
              "sampler.adaptive", "seed"):
        assert k in view
    assert view["model.activation"] == "tanh" and view["optim.lr"] == 3e-3
    assert not any(k in view for k in BN_KEYS)
    bn = hparam_view(compose_cfg(["model.norm=batch"]), ["experiment"],
                     {"experiment": "burgers_bn"})
    assert bn["experiment"] == "burgers_bn" and bn["bn.mode"] == "detached"


def test_custom_scalar_layout_has_one_chart_per_quantity():
    from pinn.divergence import custom_scalar_layout
    layout = custom_scalar_layout(n_bn_layers=2)
    charts = [c for category in layout.values() for c in category.values()]
    assert all(kind == "Multiline" and len(tags) == 1 for kind, tags in charts)
    tags = {tags[0] for _, tags in charts}
    assert "divergence/grad/one_minus_cosine" in tags and "divergence/bn/layer1/var_gap" in tags


def test_hparams_experiment_ticks_the_first_keys(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from torch.utils.tensorboard import SummaryWriter

    from pinn.logs import write_hparams
    writer = SummaryWriter(log_dir=str(tmp_path))
    write_hparams(writer, {"optim.lr": 1e-3, "pde.name": "heat", "model.width": 20,
                           "bn.mode": "detached"}, {"final/loss/total": 1.0}, shown=2)
    writer.close()
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [(h.name, h.differs) for h in experiment.hparam_infos] == [
        ("optim.lr", True), ("pde.name", True), ("model.width", False), ("bn.mode", False)]
    assert [m.name.tag for m in experiment.metric_infos] == ["final/loss/total"]
    assert metadata.SESSION_START_INFO_TAG in content
    assert ea.Scalars("final/loss/total")[0].value == 1.0
