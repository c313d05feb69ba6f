"""Where a run reports: TensorBoard, figures, the progress bar and metrics.json."""
from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Dict, Mapping, Optional

import torch

from pinn.checkpoint import write_json
from pinn.paths import RunPaths


HPARAM_METRICS = ("error/l2_rel/", "loss/total", "wall_time_s", "steps_per_s")
LINE_SECONDS = 30.0  # interval of the progress lines when the output is not a terminal
SLOW_FACTOR = 3.0  # a window this many times slower than the stage's best gets a note


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def write_hparams(writer, hparams: Dict[str, object], metrics: Dict[str, float],
                  shown: int = 5) -> None:
    """The HParams summaries of one run, into the run's own folder.

    TensorBoard ticks five hparams by default: those whose ``differs`` flag is set, then the
    rest alphabetically. The experiment written here sets the flag on the first ``shown``
    keys of ``hparams`` (the caller puts the command-line keys, the problem and the network
    first), so that those are the columns a user sees without searching the list.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    _, start, end = hparams_summaries(hparams, metrics)
    kinds = {bool: api_pb2.DATA_TYPE_BOOL, str: api_pb2.DATA_TYPE_STRING}
    infos = [api_pb2.HParamInfo(name=k, type=kinds.get(type(v), api_pb2.DATA_TYPE_FLOAT64),
                                differs=i < shown) for i, (k, v) in enumerate(hparams.items())]
    metric_infos = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=k)) for k in metrics]
    content = plugin_data_pb2.HParamsPluginData(
        experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos),
        version=metadata.PLUGIN_DATA_VERSION)
    experiment = Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                               content=content.SerializeToString())))])
    file_writer = writer._get_file_writer()
    for s in (experiment, start, end):
        file_writer.add_summary(s)
    for k, v in metrics.items():
        writer.add_scalar(k, v)


def flat_hparams(cfg: Mapping, prefix: str = "") -> Dict[str, object]:
    """Config leaves as {dotted.key: int|float|str|bool} for TensorBoard's HParams tab."""
    out: Dict[str, object] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_hparams(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        elif v is None:
            out[key] = "null"
        else:
            out[key] = str(v)
    return out


class RunLogger:
    """TensorBoard scalars and figures, a progress bar, and the final metrics of one run."""

    def __init__(self, paths: RunPaths, tensorboard: bool = True, progress: bool = True,
                 total_steps: int = 0, purge_step: Optional[int] = None):
        self.paths = paths
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # On resume, events logged after the checkpoint's step are dropped from the view.
            self.writer = SummaryWriter(log_dir=str(paths.tensorboard), purge_step=purge_step)
        self.bar = None
        self.lines = False  # plain progress lines instead of a bar (output is not a terminal)
        self.total_steps = total_steps
        self._last_line = time.monotonic()
        self._best_rate: Dict[str, float] = {}  # stage -> best window rate (see _slow_note)
        if progress and total_steps > 0:
            if sys.stderr.isatty():
                from tqdm.auto import tqdm

                # One rate and one ETA, the trainer's (optimizer steps only, compilation
                # excluded): tqdm's own would count compilation and evaluations as steps.
                self.bar = tqdm(total=total_steps, initial=purge_step or 0, unit="step",
                                file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                           "[{elapsed}{postfix}]",
                                postfix="starting (the first steps compile)")
            else:
                # Into a file (nohup, a batch job's log): a plain line every LINE_SECONDS.
                self.lines = True

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, v in values.items():
                self.writer.add_scalar(tag, v, step)

    def custom_scalars(self, layout: dict) -> None:
        if self.writer is not None:
            self.writer.add_custom_scalars(layout)

    def figure(self, tag: str, fig, step: int) -> None:
        import matplotlib.pyplot as plt

        if self.writer is not None:
            self.writer.add_figure(tag, fig, step, close=False)
        plt.close(fig)

    def progress(self, step: int, loss: float, steps_per_s: float, stage: str,
                 budget_left: Optional[float] = None) -> None:
        """Report ``step`` with the rate of the last logging window and an ETA: the steps left
        at that rate, or the time budget left (``budget_left`` seconds) when it ends the run
        first."""
        left = max(self.total_steps - step, 0) / max(steps_per_s, 1e-9)
        until = ""
        if budget_left is not None and budget_left < left:
            left, until = budget_left, " (time budget)"
        text = (f"{stage} loss={loss:.3e} {steps_per_s:.1f} steps/s ETA {_clock(left)}{until}"
                f"{self._slow_note(stage, steps_per_s)}")
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(step - self.bar.n)  # redraws at most every mininterval
        elif self.lines and (time.monotonic() - self._last_line >= LINE_SECONDS
                             or step >= self.total_steps):
            self._last_line = time.monotonic()
            pct = 100.0 * step / max(self.total_steps, 1)
            print(f"step {step}/{self.total_steps} ({pct:.0f}%) {text}", file=sys.stderr,
                  flush=True)

    def _slow_note(self, stage: str, steps_per_s: float) -> str:
        """A note when this window's rate is under a third of the best rate this stage has
        shown: the usual cause is another process on the cores, which stalls a run that uses
        several torch threads (measured on 2 cores: 20 instead of 74 steps/s)."""
        best = self._best_rate.get(stage, 0.0)
        self._best_rate[stage] = max(best, steps_per_s)
        if best > 0 and steps_per_s < best / SLOW_FACTOR:
            threads = torch.get_num_threads()
            hint = (f"; {threads} torch threads: trainer.num_threads=1 keeps the pace"
                    if threads > 1 else "")
            return (f" [slow: {best / steps_per_s:.0f}x below this stage's {best:.1f} steps/s; "
                    f"another process on the cores?{hint}]")
        return ""

    def redirect_logging(self):
        """A context in which log records are printed above the progress bar, not onto it."""
        if self.bar is None:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm()

    def finish(self, hparams: Mapping[str, object], metrics: Mapping[str, object],
               summary: str = "", shown: int = 5) -> None:
        """Write metrics.json atomically, the HParams row (the headline metrics only: errors,
        final loss, wall time, rate; the first ``shown`` hparams ticked in TensorBoard) and
        the whole summary as text, then close."""
        write_json(dict(metrics), self.paths.metrics)
        if self.writer is not None:
            numeric = {f"final/{k}": float(v) for k, v in metrics.items()
                       if k.startswith(HPARAM_METRICS) and isinstance(v, (int, float))
                       and not isinstance(v, bool) and math.isfinite(float(v))}
            write_hparams(self.writer, dict(hparams), numeric, shown)
            if summary:
                # Four leading spaces: TensorBoard's text tab renders markdown, this keeps the
                # summary's columns.
                self.writer.add_text("summary", "\n".join("    " + line
                                                          for line in summary.splitlines()),
                                     int(metrics.get("steps", 0)))
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
