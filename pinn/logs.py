"""Where a run reports: TensorBoard, figures, the progress bar and metrics.json."""
from __future__ import annotations

import math
import sys
from typing import Dict, Mapping, Optional

from pinn.checkpoint import write_json
from pinn.paths import RunPaths


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
        if progress and total_steps > 0:
            from tqdm.auto import tqdm

            # On a terminal the bar redraws twice a second; into a file (nohup, a batch
            # job's log) one line every 30 s instead of a carriage return every few steps.
            interactive = sys.stderr.isatty()
            self.bar = tqdm(total=total_steps, initial=purge_step or 0, unit="step",
                            file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5 if interactive else 30.0)

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

    def progress(self, step: int, loss: float, steps_per_s: float, stage: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{stage} loss={loss:.3e} {steps_per_s:.1f} steps/s",
                                     refresh=False)
            self.bar.update(step - self.bar.n)  # redraws at most every mininterval

    def finish(self, hparams: Mapping[str, object], metrics: Mapping[str, object]) -> None:
        """Write metrics.json atomically and the HParams summary, then close."""
        write_json(dict(metrics), self.paths.metrics)
        if self.writer is not None:
            numeric = {f"final/{k}": float(v) for k, v in metrics.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(float(v))}
            self.writer.add_hparams(dict(hparams), numeric, run_name=".")
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
