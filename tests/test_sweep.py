"""Searches (hydra/sweeper=optuna): the search-space syntax, pruning, failed and parallel trials,
continuing a study, the report on a study and on a grid multirun, the submitit local launcher,
and the one-line refusals."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from pinn.paths import RunPaths
from pinn.report import Row, build_report, params_figure, study_rows, write_tables
from pinn.sweep.heartbeat import CLAIM, HEARTBEAT, OWNER, Heartbeat, stale_reason, this_process
from pinn.sweep.space import SearchSpaceError, parse_search_space
from pinn.sweep.study import (RERUN_OF, STALE, ask, default_study_name, finished_count,
                              make_pruner, recover_stale, running_count, state_of, storage_for)
from pinn.sweep.trial import TrialReporter, check_metric, default_metric
from pinn.train import job_outcome, run
from pinn.pdes import build_pde
from tests.conftest import compose_cfg, run_cli, start_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = ["pde=heat", "model.depth=2", "model.width=8", "trainer.steps=40", "trainer.qn_steps=0",
        "trainer.eval_every=10", "trainer.log_every=10", "trainer.progress=false",
        "sampler.n_interior=64", "sampler.n_initial=16", "sampler.n_boundary=16",
        "pde.eval_nx=21", "pde.eval_nt=11", "log.figures=false"]


# -- the search space ----------------------------------------------------------------------
def test_the_documented_search_space_becomes_optuna_distributions():
    space = parse_search_space(["pde=heat", "optim.lr=tag(log, interval(1e-4, 1e-2))",
                                "model.width=range(16, 64, step=8)",
                                "model.activation=choice(tanh, gelu, sin)",
                                "sampler.rad_k=interval(0.5, 2)",
                                "model.depth=tag(int, interval(2, 6))"])
    assert space.fixed == ["pde=heat"]
    p = space.params
    assert p["optim.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert p["model.width"] == IntDistribution(16, 56, step=8)  # stop excluded, as range()
    assert p["model.activation"] == CategoricalDistribution(["tanh", "gelu", "sin"])
    assert p["sampler.rad_k"] == FloatDistribution(0.5, 2.0)
    assert p["model.depth"] == IntDistribution(2, 6)
    lines = space.overrides({"optim.lr": 0.00123, "model.width": 24, "model.activation": "gelu",
                             "sampler.rad_k": 1.5, "model.depth": 3})
    assert lines == ["pde=heat", "optim.lr=0.00123", "model.width=24", "model.activation=gelu",
                     "sampler.rad_k=1.5", "model.depth=3"]


def test_params_of_the_sweeper_config_join_the_command_line_which_wins():
    space = parse_search_space(["optim.lr=interval(1e-3, 1e-2)"],
                               {"optim.lr": "interval(1, 2)", "model.width": "choice(8, 16)"})
    assert space.params["optim.lr"] == FloatDistribution(1e-3, 1e-2)
    assert space.params["model.width"] == CategoricalDistribution([8, 16])


@pytest.mark.parametrize("args, words", [
    (["optim.lr=1e-3"], "search space is empty"),
    (["optim.lr=interval(1e-2, 1e-3)"], "is empty"),
    (["optim.lr=tag(log, interval(0, 1e-3))"], "log scale needs low > 0"),
    (["model.width=range(8, 9)"], "holds one value"),
    (["model.width=range(16, 8)"], "is empty"),
    (["model.width=tag(log, range(8, 64, step=8))"], "cannot be on a log scale"),
    (["model.activation=choice(tanh, tanh)"], "repeats a value"),
    (["optim.lr=tag(loog, interval(1e-3, 1e-2))"], "unknown tag loog"),
    (["model.depth=tag(int, interval(1.5, 4))"], "must be integers"),
    (["optim.lr=interval(1e-3"], "cannot read"),
])
def test_malformed_search_spaces_are_refused_in_one_line(args, words):
    with pytest.raises(SearchSpaceError) as e:
        parse_search_space(args)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_default_study_name_is_the_same_for_the_same_command_only():
    a = default_study_name(["pde=heat", "optim.lr=interval(1e-3, 1e-2)", "seed=1"])
    assert a == default_study_name(["seed=1", "optim.lr=interval(1e-3, 1e-2)", "pde=heat"])
    assert a.startswith("heat-")
    assert a != default_study_name(["pde=heat", "optim.lr=interval(1e-3, 1e-1)", "seed=1"])


# -- the study -----------------------------------------------------------------------------
def test_stale_trials_of_a_killed_search_are_failed_and_queued_again(tmp_path):
    storage = storage_for(None, str(tmp_path))
    study = optuna.create_study(study_name="s", storage=storage)
    dist = {"x": FloatDistribution(0.0, 1.0)}
    done = study.ask(dist)
    study.tell(done, 1.0)
    killed = study.ask(dist)  # a search killed while this trial ran
    again = optuna.load_study(study_name="s", storage=storage_for(None, str(tmp_path)))
    assert recover_stale(again) == 1
    assert finished_count(again) == 1  # the stale trial does not count
    t = again.trials[killed.number]
    assert t.state == TrialState.FAIL and t.user_attrs[STALE]
    rerun = again.ask(dist)
    assert rerun.params == killed.params and rerun.user_attrs["rerun_of"] == killed.number
    assert recover_stale(again) == 1  # the re-run is running: a second restart queues it again


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: no process has this pid now
    return child.pid


def test_a_running_trial_is_stale_only_when_its_search_is_provably_gone():
    here = this_process()
    now = time.time()
    me = here.record()
    node = {**me, "host": "node-17", "boot": "another-boot"}  # a search on another machine

    def reason(attrs, started=None):
        return stale_reason(attrs, started, now, 60.0, here)

    # On this machine the process decides: alive (even with an old heartbeat) or gone.
    assert reason({OWNER: me, HEARTBEAT: now - 3600}) is None
    assert "is gone" in reason({OWNER: {**me, "pid": _dead_pid()}, HEARTBEAT: now})
    assert "another process has that pid" in reason({OWNER: {**me, "started": "1"},
                                                     HEARTBEAT: now})
    assert "restarted" in reason({OWNER: {**me, "boot": "earlier-boot"}, HEARTBEAT: now})
    # On another machine (or a pid namespace this one cannot see) the heartbeat decides.
    assert reason({OWNER: node, HEARTBEAT: now - 10}) is None
    assert "no heartbeat for 3600 s (grace 60 s)" in reason({OWNER: node, HEARTBEAT: now - 3600})
    assert reason({OWNER: {**node, "every": 100.0}, HEARTBEAT: now - 200}) is None  # 3 beats
    assert reason({OWNER: {**me, "pidns": "pid:[1]", "pid": _dead_pid()},
                   HEARTBEAT: now}) is None
    # A journal written before heartbeats: no owner, stale as it always was.
    assert "no owner recorded" in reason({"status": "completed"})
    # A queued trial just taken by a claimant that records itself as owner next.
    just = datetime.fromtimestamp(now - 1, tz=timezone.utc)
    claim = {f"{CLAIM}a": {**me, "time": now}}
    assert reason(claim, just) is None
    assert "claimed it is gone" in reason({f"{CLAIM}a": {**me, "pid": _dead_pid(),
                                                         "time": now}}, just)
    assert "no owner since" in reason(claim, datetime.fromtimestamp(now - 90, tz=timezone.utc))


def test_a_trial_records_its_search_and_other_searches_leave_it_running(tmp_path):
    dist = {"x": FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(study_name="s", storage=storage_for(None, str(tmp_path)))
    owner = this_process(every=0.05)
    trial = ask(study, dist, owner)
    attrs = study.trials[trial.number].user_attrs
    assert attrs[OWNER] == owner.record() and attrs[OWNER]["pid"] == os.getpid()
    assert "x" in trial.params and attrs[HEARTBEAT] <= time.time()
    with Heartbeat(study._storage, 0.05) as beat:  # refreshed from a background thread
        beat.add(trial._trial_id)
        time.sleep(0.5)
    assert study.trials[trial.number].user_attrs[HEARTBEAT] > attrs[HEARTBEAT]
    other = optuna.load_study(study_name="s", storage=storage_for(None, str(tmp_path)))
    assert recover_stale(other) == 0 and running_count(other) == 1
    # A queued trial is claimed, then owned: never RUNNING without a record of its search.
    study.enqueue_trial({"x": 0.25}, user_attrs={RERUN_OF: 7})
    queued = ask(study, dist, owner)
    attrs = study.trials[queued.number].user_attrs
    assert queued.params == {"x": 0.25} and attrs[OWNER] == owner.record()
    assert attrs[f"{CLAIM}{owner.token}"]["pid"] == os.getpid()
    assert recover_stale(other) == 0 and running_count(other) == 2


def test_two_searches_that_find_one_stale_trial_queue_it_once(tmp_path):
    dist = {"x": FloatDistribution(0.0, 1.0)}
    killed = optuna.create_study(study_name="s", storage=storage_for(None, str(tmp_path)))
    trial = ask(killed, dist, dataclasses.replace(this_process(), pid=_dead_pid()))
    a, b = (optuna.load_study(study_name="s", storage=storage_for(None, str(tmp_path)))
            for _ in range(2))
    seen_by_b = b.get_trials(deepcopy=True)  # b looked before a failed the trial ...
    assert recover_stale(a) == 1
    b.get_trials = lambda deepcopy=True, states=None: [  # ... and acts on what it saw
        t for t in seen_by_b if states is None or t.state in states]
    assert recover_stale(b) == 0
    study = optuna.load_study(study_name="s", storage=storage_for(None, str(tmp_path)))
    assert [t.user_attrs.get(RERUN_OF) for t in study.trials] == [None, trial.number]
    assert "is gone" in study.trials[trial.number].user_attrs[STALE]


def test_outcomes_map_to_trial_states():
    assert state_of({"status": "completed", "value": 0.5}) == (TrialState.COMPLETE, 0.5)
    assert state_of({"status": "completed", "value": float("nan")})[0] == TrialState.FAIL
    assert state_of({"status": "pruned", "value": 0.5}) == (TrialState.PRUNED, None)
    assert state_of({"status": "diverged"})[0] == TrialState.FAIL
    assert state_of({"status": "failed", "message": "x"})[0] == TrialState.FAIL
    out = job_outcome({"status": "completed", "error/l2_rel/u": 0.25, "loss/total": 2.0,
                       "steps": 7, "wall_time_s": 1.0}, None)
    assert out["value"] == 0.25 and out["metric"] == "error/l2_rel/u" and out["steps"] == 7
    assert job_outcome({"status": "completed", "loss/total": 2.0}, None)["value"] == 2.0


def test_metrics_that_runs_do_not_produce_are_refused():
    heat = build_pde(compose_cfg(["pde=heat"]).pde)
    assert default_metric(heat) == "error/l2_rel/u"
    assert check_metric("loss/total", heat) == "loss/total"
    with pytest.raises(ValueError, match="error/l2_rel/v is not a metric"):
        check_metric("error/l2_rel/v", heat)
    nls = build_pde(compose_cfg(["pde=nls"]).pde)
    assert check_metric("error/l2_rel/h_abs", nls) == "error/l2_rel/h_abs"


def test_a_pruned_trial_ends_like_an_interrupted_run_with_a_checkpoint(tmp_path):
    """A trial worse than the median of the completed one at step 10 is stopped there; its
    run folder holds a checkpoint of step 10 and status pruned, with that evaluation's errors."""
    study = optuna.create_study(pruner=make_pruner("median", startup_trials=1))
    best = study.ask()
    for step in (10, 20, 30, 40):
        best.report(1e-9, step)
    study.tell(best, 1e-9)
    trial = study.ask()
    cfg = compose_cfg(TINY)
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    metrics = run(cfg, paths, reporter=TrialReporter(trial, "error/l2_rel/u", "median"))
    assert metrics["status"] == "pruned" and metrics["steps"] == 10
    assert metrics["trial"] == trial.number and metrics["objective"] == "error/l2_rel/u"
    assert "pruned by the median pruner at step 10" in metrics["message"]
    assert math.isfinite(metrics["error/l2_rel/u"])
    assert json.loads(paths.metrics.read_text())["status"] == "pruned"
    from pinn.checkpoint import load_checkpoint

    assert load_checkpoint(paths.last_checkpoint).step == 10
    assert study.trials[trial.number].intermediate_values == {10: metrics["error/l2_rel/u"]}


# -- whole searches from the command line --------------------------------------------------
def _study(sweep_dir):
    info = yaml.safe_load((sweep_dir / "study.yaml").read_text())
    return optuna.load_study(study_name=info["study_name"],
                             storage=storage_for(str(sweep_dir / "study.journal"), str(sweep_dir)))


SEARCH = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=7",
          "hydra.sweeper.pruner_startup_trials=1", *TINY, "trainer.on_nonfinite=stop",
          "optim.lr=choice(1e-9, 1e-2)", "trainer.debug_nan_at=choice(5, 100000)"]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Six trials of a search in which some diverge (NaN at step 5), some learn nothing
    (lr 1e-9: pruned once a better trial completed) and the rest complete."""
    cwd = tmp_path_factory.mktemp("search")
    p = run_cli([*SEARCH, "hydra.sweeper.n_trials=6"], cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    (sweep_dir,) = (cwd / "outputs" / "sweeps").iterdir()
    return cwd, sweep_dir, p


def test_a_search_prunes_records_failures_and_goes_on(search):
    cwd, sweep_dir, p = search
    study = _study(sweep_dir)
    states = {t.number: t.state for t in study.trials}
    assert len(states) == 6 and sorted(states) == list(range(6))
    assert TrialState.PRUNED in states.values() and TrialState.FAIL in states.values()
    assert TrialState.COMPLETE in states.values()
    for t in study.trials:
        m = json.loads((sweep_dir / str(t.number) / "metrics.json").read_text())
        assert m["trial"] == t.number
        want = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned",
                TrialState.FAIL: "diverged"}[t.state]
        assert m["status"] == want == t.user_attrs["status"]
        if t.state == TrialState.COMPLETE:
            assert t.value == m["error/l2_rel/u"] and t.params["optim.lr"] == 1e-2
        if t.state == TrialState.PRUNED:
            assert (sweep_dir / str(t.number) / "checkpoints" / "last.pt").is_file()
            assert m["steps"] < 40 and t.params["optim.lr"] == 1e-9
        # Every trial, pruned and failed ones too, has its row in TensorBoard's HParams view.
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        ea = EventAccumulator(str(sweep_dir / str(t.number) / "tensorboard"))
        ea.Reload()
        assert "_hparams_/session_start_info" in ea.PluginTagToContent("hparams")
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_trial"] == study.best_trial.number
    assert results["best_value"] == study.best_value


def test_rerunning_the_command_continues_the_study(search):
    cwd, sweep_dir, _ = search
    p = run_cli([*SEARCH, "hydra.sweeper.n_trials=8"], cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "6 of 8 trials done" in p.stderr + p.stdout
    study = _study(sweep_dir)
    assert [t.number for t in study.trials] == list(range(8))
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    assert sorted(int(d.name) for d in sweep_dir.iterdir() if d.name.isdigit()) == list(range(8))


def test_a_killed_search_reruns_its_running_trial_once(search, tmp_path):
    cwd, sweep_dir, _ = search
    study = _study(sweep_dir)
    n = len(study.trials)
    killed = study.ask({k: v for k, v in study.trials[0].distributions.items()})
    # The killed search wanted n + 1 trials: the one it was running is run again, nothing else.
    p = run_cli([*SEARCH, f"hydra.sweeper.n_trials={n + 1}"], cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    study = _study(sweep_dir)
    assert study.trials[killed.number].state == TrialState.FAIL
    assert study.trials[killed.number].user_attrs[STALE]
    rerun = [t for t in study.trials if t.user_attrs.get("rerun_of") == killed.number]
    assert len(rerun) == 1 and rerun[0].params == killed.params
    assert rerun[0].state != TrialState.RUNNING
    assert finished_count(study) == n + 1 and len(study.trials) == n + 2


def _shared(sweep_dir, *args):
    """A search on the study ``shared`` in ``sweep_dir``, with training overrides ``args``."""
    return ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=random",
            "hydra.sweeper.pruner=none", "hydra.sweeper.study_name=shared",
            f"hydra.sweep.dir={sweep_dir}", *TINY, *args,
            "optim.lr=tag(log, interval(1e-3, 1e-2))"]


def _wait_for_running_trial(sweep_dir, process, timeout=120.0):
    """Wait until ``process`` (a search) runs a trial; returns it."""
    end = time.time() + timeout
    while time.time() < end and process.poll() is None:
        if (sweep_dir / "study.yaml").is_file() and (sweep_dir / "study.journal").is_file():
            running = [t for t in _study(sweep_dir).trials if t.state == TrialState.RUNNING
                       and t.user_attrs.get(OWNER, {}).get("pid") == process.pid]
            if running and (sweep_dir / str(running[0].number) / ".hydra").is_dir():
                return running[0]
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no running trial: {process.communicate()[1][-3000:]}")


@pytest.mark.slow  # 33 s; one search continued on its study stays in the default run
def test_two_searches_on_one_study_run_every_trial_once(tmp_path):
    """The second search starts while the first runs a trial: neither takes the other's
    running trials for stale ones, and together they run n_trials (one more at most: asking
    is not atomic across processes)."""
    sweep, n = tmp_path / "sweep", 6
    args = _shared(sweep, f"hydra.sweeper.n_trials={n}", "trainer.steps=300")
    first = start_cli(args, cwd=tmp_path)
    _wait_for_running_trial(sweep, first)
    second = start_cli(args, cwd=tmp_path)
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    trials = _study(sweep).trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert n <= len(trials) <= n + 1
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert not any(STALE in t.user_attrs or RERUN_OF in t.user_attrs for t in trials)
    assert {t.user_attrs[OWNER]["pid"] for t in trials} == {first.pid, second.pid}
    assert sorted(int(d.name) for d in sweep.iterdir() if d.name.isdigit()) == \
        [t.number for t in trials]
    for t in trials:
        assert json.loads((sweep / str(t.number) / "metrics.json").read_text())["trial"] == \
            t.number


def test_the_trial_of_a_search_killed_with_sigkill_is_run_again_once(tmp_path):
    sweep = tmp_path / "sweep"
    killed = start_cli(_shared(sweep, "hydra.sweeper.n_trials=1", "trainer.steps=1000000",
                               "trainer.eval_every=100000"), cwd=tmp_path)
    trial = _wait_for_running_trial(sweep, killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    p = run_cli(_shared(sweep, "hydra.sweeper.n_trials=1"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"trial {trial.number} is stale (its search (pid {killed.pid} on" in p.stdout + p.stderr
    study = _study(sweep)
    assert study.trials[trial.number].state == TrialState.FAIL
    assert "is gone" in study.trials[trial.number].user_attrs[STALE]
    rerun = [t for t in study.trials if t.user_attrs.get(RERUN_OF) == trial.number]
    assert len(rerun) == 1 and rerun[0].params == trial.params
    assert rerun[0].state == TrialState.COMPLETE
    assert rerun[0].user_attrs[OWNER]["pid"] != killed.pid
    assert finished_count(study) == 1 and len(study.trials) == 2
    assert recover_stale(study) == 0  # once: a finished re-run is not queued again


def test_the_report_ranks_every_trial_of_a_study(search):
    cwd, sweep_dir, _ = search
    p = run_cli([str(sweep_dir)], cwd=cwd, module="pinn.report")
    assert p.returncode == 0, p.stderr[-3000:]
    out = sweep_dir / "report"
    for name in ("report.md", "report.csv", "history.png", "params.png"):
        assert (out / name).is_file(), name
    study = _study(sweep_dir)
    rows = list(__import__("csv").DictReader(open(out / "report.csv")))
    assert sorted(int(r["trial"]) for r in rows) == [t.number for t in study.trials]
    assert rows[0]["trial"] == str(study.best_trial.number) and rows[0]["status"] == "completed"
    assert float(rows[0]["error/l2_rel/u"]) == study.best_value
    statuses = [r["status"] for r in rows]
    assert statuses.index("pruned") > statuses.index("completed")
    assert "optim.lr" in rows[0] and "trainer.debug_nan_at" in rows[0]
    columns = _table((out / "report.md").read_text())
    for key in ("error/l2_rel/u", "steps", "wall time (s)", "optim.lr", "trainer.debug_nan_at"):
        assert len(_shapes(columns[key])) == 1, (key, columns[key])


def _table(text: str) -> dict:
    """The cells of a Markdown table, column by column: header -> cells."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    head, *body = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {h: [row[i] for row in body] for i, h in enumerate(head)}


def _shapes(cells) -> set:
    """How the numbers of a column are written: (notation, decimals) of each non-empty cell."""
    return {("e" if "e" in c else "f", len(c.split("e")[0].split(".")[1]) if "." in c else 0)
            for c in cells if c != "-"}


def test_each_column_of_the_table_has_one_number_format(tmp_path):
    rows = [Row("0", "completed", 1.4937e-04, {"optim.lr": 1.4937e-04, "model.width": 28,
                                                 "sampler.rad_k": 28.0, "act": "tanh"}, 40, 1.0),
            Row("1", "completed", 0.001252, {"optim.lr": 0.001252, "model.width": 32,
                                             "sampler.rad_k": 32.23, "act": "gelu"}, 40, 12.345),
            Row("2", "pruned", 0.5, {"optim.lr": 0.0031, "model.width": 16,
                                     "sampler.rad_k": 1.5, "act": "sin"}, 10, 61.25),
            Row("3", "failed", None, {"optim.lr": 0.002, "model.width": 8,
                                      "sampler.rad_k": 2.0, "act": "tanh"}, None, None)]
    columns = _table(write_tables(rows, "error/l2_rel/u", tmp_path, "t"))
    sci, fixed = r"^(-|\d\.\d{3}e[+-]\d\d)$", r"^(-|\d+\.\d\d)$"
    for key, pattern in [("error/l2_rel/u", sci), ("optim.lr", sci), ("sampler.rad_k", fixed),
                         ("model.width", r"^\d+$"), ("steps", r"^(-|\d+)$"),
                         ("wall time (s)", r"^(-|\d+\.\d)$"), ("act", r"^[a-z]+$")]:
        assert all(re.match(pattern, c) for c in columns[key]), (key, columns[key])
    assert columns["sampler.rad_k"] == ["28.00", "32.23", "1.50", "2.00"]
    assert columns["error/l2_rel/u"] == ["1.494e-04", "1.252e-03", "5.000e-01", "-"]
    assert columns["wall time (s)"] == ["1.0", "12.3", "61.2", "-"]
    csv_rows = list(__import__("csv").DictReader(open(tmp_path / "report.csv")))
    assert [float(r["optim.lr"]) for r in csv_rows] == [r.params["optim.lr"] for r in rows]
    assert float(csv_rows[1]["wall time (s)"]) == 12.345


def _stored_study(folder, objectives):
    """A study on disk with a log-scale and a linear parameter, without training: folder holds
    study.yaml and the journal, as a search leaves them."""
    storage = storage_for(None, str(folder))
    study = optuna.create_study(study_name="scales", storage=storage)
    dists = {"optim.lr": FloatDistribution(1e-4, 1e-2, log=True),
             "sampler.rad_k": FloatDistribution(0.5, 2.0)}
    for i, value in enumerate(objectives):  # lr within one decade: no axis would guess log
        study.add_trial(optuna.trial.create_trial(
            params={"optim.lr": 2e-3 + 1e-3 * i, "sampler.rad_k": 0.5 + 0.3 * i},
            distributions=dists, value=value))
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "study_name": "scales", "storage": str(folder / "study.journal"),
        "metric": "error/l2_rel/u", "direction": "minimize"}))
    return folder


def test_the_report_plots_a_log_scale_parameter_on_a_log_axis(tmp_path):
    folder = _stored_study(tmp_path, [1e-4, 3e-3, 2e-2, 1e-1])
    rows, metric, _, scales = study_rows(folder)
    assert scales == {"optim.lr": "log", "sampler.rad_k": "linear"}
    axes = {ax.get_xlabel(): ax for ax in params_figure(rows, metric, scales).axes}
    assert axes["optim.lr"].get_xscale() == "log"
    assert axes["sampler.rad_k"].get_xscale() == "linear"
    assert axes["optim.lr"].get_yscale() == "log"  # the objective spans three decades
    build_report(folder)
    assert (folder / "report" / "params.png").is_file()
    narrow = _stored_study(tmp_path / "narrow", [0.61, 0.62, 0.65, 0.7])
    rows, metric, _, scales = study_rows(narrow)
    assert {ax.get_yscale() for ax in params_figure(rows, metric, scales).axes} == {"linear"}


@pytest.fixture(scope="module")
def parallel_search(tmp_path_factory):
    """Two trials at a time, in two processes (the joblib launcher)."""
    tmp_path = tmp_path_factory.mktemp("parallel")
    p = run_cli(["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none", *TINY,
                 "trainer.steps=150", "optim.lr=tag(log, interval(1e-3, 1e-2))",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp_path, p


def test_parallel_trials_run_at_the_same_time_in_processes(parallel_search):
    tmp_path, p = parallel_search
    assert "2 trials at a time, each in its own process (joblib launcher)" in p.stderr + p.stdout
    jobs = [tmp_path / "sweep" / str(i) for i in range(2)]
    started = [os.stat(j / ".hydra" / "config.yaml").st_mtime for j in jobs]
    ended = [os.stat(j / "metrics.json").st_mtime for j in jobs]
    assert max(started) < min(ended)  # both were running at once
    for j in jobs:
        cfg = OmegaConf.load(j / ".hydra" / "config.yaml")
        assert cfg.trainer.num_threads == max(1, (os.cpu_count() or 1) // 2)
        assert json.loads((j / "metrics.json").read_text())["status"] == "completed"


def test_a_parallel_search_logs_one_line_when_a_trial_starts_and_one_when_it_ends(
        parallel_search):
    """Neither the launcher's lines for each job nor the trials' own summaries, which two
    processes would print into each other: one log line per trial and event."""
    _, p = parallel_search
    lines = (p.stdout + p.stderr).splitlines()
    started = [int(m.group(1)) for m in map(re.compile(r"\] trial (\d+) started: optim\.lr="
                                                       r"\d\.\d+$").search, lines) if m]
    ended = [int(m.group(1)) for m in map(re.compile(
        r"\] trial (\d+) ended: completed, error/l2_rel/u \d\.\d{4}e-\d\d; 150 steps in "
        r"\d+\.\d s$").search, lines) if m]
    assert sorted(started) == sorted(ended) == [0, 1], "\n".join(lines)
    assert sum(bool(re.search(r"\] trial \d+ ", line)) for line in lines) == 4, "\n".join(lines)
    for noise in ("Joblib", "Launching", "#0 :", "run folder:", "error/max_abs/u"):
        assert not any(noise in line for line in lines), (noise, "\n".join(lines))


def test_the_submitit_local_launcher_runs_a_search(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    p = run_cli(["-m", "hydra/sweeper=optuna", "hydra/launcher=submitit_local",
                 "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", *TINY,
                 "optim.lr=tag(log, interval(1e-3, 1e-2))",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    study = _study(tmp_path / "sweep")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        m = json.loads((tmp_path / "sweep" / str(t.number) / "metrics.json").read_text())
        assert m["error/l2_rel/u"] == t.value


def test_the_report_of_a_grid_multirun(tmp_path):
    sweep = tmp_path / "grid"
    p = run_cli(["-m", *TINY, "optim.lr=1e-3,1e-2", "model.activation=tanh,gelu",
                 f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    text = build_report(sweep)
    rows = list(__import__("csv").DictReader(open(sweep / "report" / "report.csv")))
    assert len(rows) == 4 and {r["model.activation"] for r in rows} == {"tanh", "gelu"}
    values = [float(r["error/l2_rel/u"]) for r in rows]
    assert values == sorted(values)
    for r in rows:
        m = json.loads((sweep / r["trial"] / "metrics.json").read_text())
        assert float(r["error/l2_rel/u"]) == m["error/l2_rel/u"]
    assert "4 trials: 4 completed" in text
    assert (sweep / "report" / "importances.png").is_file()


@pytest.mark.parametrize("args, words", [
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trail=3", "optim.lr=interval(1e-3, 1e-2)"],
     "hydra.sweeper.n_trail is not an option of the optuna sweeper (did you mean "
     "hydra.sweeper.n_trials?)"),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.pruner=meadian",
      "optim.lr=interval(1e-3, 1e-2)"], "hydra.sweeper.pruner='meadian' is not allowed: one of"),
    (["-m", "hydra/sweeper=optuna", "optim.lr=1e-3"], "the search space is empty"),
    (["-m", "hydra/sweeper=optuna", "optim.lr=interval(1e-2, 1e-3)"], "is empty"),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.metric=error/l2_rel/w",
      "optim.lr=interval(1e-3, 1e-2)"], "hydra.sweeper.metric=error/l2_rel/w is not a metric"),
    (["hydra/sweeper=optuna", "optim.lr=interval(1e-3, 1e-2)"], "add -m"),
    (["-m", "hydra/sweeper=optuna", "hydra.sweeper.heartbeat_grace=5",
      "optim.lr=interval(1e-3, 1e-2)"], "hydra.sweeper.heartbeat_grace=5.0 is not allowed: more "
     "seconds than hydra.sweeper.heartbeat_interval=10.0"),
])
def test_bad_searches_stop_in_one_line_before_any_trial(tmp_path, args, words):
    p = run_cli([*args, "pde=heat"], cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr
    assert not (tmp_path / "outputs").exists()


def test_the_report_refuses_a_folder_without_a_sweep(tmp_path):
    p = run_cli([str(tmp_path)], cwd=tmp_path, module="pinn.report")
    assert p.returncode == 2 and "holds no sweep" in p.stderr and len(p.stderr.splitlines()) == 1
