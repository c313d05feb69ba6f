"""``python -m pinn.timeline RUN [RUN ...]``: error against wall time for several runs, one figure.

Which method is best depends on the budget: a Gauss-Newton step costs far more than a
quasi-Newton one and gains more. This reads the evaluations each run logged to TensorBoard
(``error/l2_rel/<output>`` every ``trainer.eval_every`` steps) with their wall-clock times, and
draws the error against the minutes since the run's first logged step, one line per run, on a
log scale; the same numbers go to a CSV file beside the figure.

    python -m pinn.timeline outputs/a outputs/b --labels ssbroyden lm --out burgers.png
    python -m pinn.timeline outputs/multirun/2026-12-07/10-00-00/* --metric error/l2_rel/u

A run is labelled by ``--labels`` (one per run, in order) or by its command-line overrides
(``.hydra/overrides.yaml``) or else its folder's name.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml


class TimelineError(ValueError):
    """A folder without TensorBoard logs or without the metric; one line."""


def _scalars(run: Path) -> Dict[str, List[Tuple[float, int, float]]]:
    """Every scalar tag of a run's TensorBoard logs: tag -> [(wall time, step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = run / "tensorboard"
    if not logs.is_dir():
        raise TimelineError(f"{run}: no TensorBoard logs (a run folder has tensorboard/)")
    acc = EventAccumulator(str(logs), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.wall_time, e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def curve(run: Path, metric: str) -> List[Tuple[float, int, float]]:
    """(minutes since the run's first logged step, step, value) of ``metric``, in step order."""
    scalars = _scalars(run)
    if metric not in scalars:
        errors = sorted(t for t in scalars if t.startswith("error/"))
        raise TimelineError(f"{run}: no {metric} in its logs; it has {', '.join(errors) or 'none'}")
    start = min(t for events in scalars.values() for t, _, _ in events)
    events = sorted(scalars[metric], key=lambda e: e[1])
    return [((t - start) / 60.0, step, value) for t, step, value in events]


def label_of(run: Path) -> str:
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        items = yaml.safe_load(overrides.read_text()) or []
        kept = [i for i in items if not str(i).startswith(("hydra.", "trainer.progress"))]
        if kept:
            return " ".join(str(i) for i in kept)
    return run.name


def timeline_figure(curves: Dict[str, List[Tuple[float, int, float]]], metric: str,
                    title: str = ""):
    from pinn.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.4), constrained_layout=True)
    for label, points in curves.items():
        ax.plot([p[0] for p in points], [p[2] for p in points], marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("minutes since the first logged step")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def write_timeline(runs: Sequence[Path], out: Path, metric: str,
                   labels: Optional[Sequence[str]] = None, title: str = "") -> Path:
    """The figure ``out`` (.png) and ``out`` with .csv (label, minutes, step, value)."""
    if labels is not None and len(labels) != len(runs):
        raise TimelineError(f"--labels: {len(labels)} labels for {len(runs)} runs; give one "
                            "per run, in order")
    curves: Dict[str, List[Tuple[float, int, float]]] = {}
    for i, run in enumerate(runs):
        label = labels[i] if labels is not None else label_of(run)
        while label in curves:
            label += "'"
        curves[label] = curve(Path(run), metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = timeline_figure(curves, metric, title)
    fig.savefig(out, dpi=120)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "minutes", "step", metric])
        for label, points in curves.items():
            for minutes, step, value in points:
                w.writerow([label, f"{minutes:.4f}", step, repr(value)])
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pinn.timeline", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--metric", default="error/l2_rel/u", help="a logged scalar "
                        "(default error/l2_rel/u)")
    parser.add_argument("--labels", nargs="+", help="one label per run")
    parser.add_argument("--out", type=Path, default=Path("timeline.png"),
                        help="the figure (a CSV file of the numbers goes beside it)")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        out = write_timeline(args.runs, args.out, args.metric, args.labels, args.title)
    except TimelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}\n{out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
