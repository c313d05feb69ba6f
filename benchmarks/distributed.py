"""One process against torchrun ranks on this machine: Adam steps per second of one run.

    python benchmarks/distributed.py [--ranks 2] [--repeats 3] [--steps 600] [--points 4000 32000]

For each interior-point count, alternately: one process with one torch thread, one process
with as many threads as ranks, and ``torchrun --standalone --nproc_per_node=R`` (one thread per
rank); each run trains the default Burgers network (float64, 4x20 tanh, compiled Taylor engine)
for ``--steps`` Adam steps. Reported: the median of ``steps_per_s`` from metrics.json (optimizer
steps only: compilation, evaluation and start-up excluded) and the bytes all-reduced per loss
evaluation. Run it with nothing else running: the rates depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(cmd, cwd: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HYDRA_FULL_ERROR": "0"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    (metrics,) = list(cwd.glob("outputs/**/metrics.json"))
    out = json.loads(metrics.read_text())
    metrics.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--points", type=int, nargs="+", default=[4000, 32000])
    args = ap.parse_args()
    rows = []
    for n in args.points:
        common = [f"sampler.n_interior={n}", f"trainer.steps={args.steps}",
                  "trainer.qn_steps=0", "sampler.resample_every=0", "sampler.adaptive=none",
                  "trainer.progress=false", "log.figures=false", "trainer.eval_every=1000000"]
        rates = {"1 process, 1 thread": [], f"1 process, {args.ranks} threads": [],
                 f"{args.ranks} ranks, 1 thread each": []}
        nbytes = None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                cwd = Path(d)
                py = [sys.executable, "-m", "pinn.train", *common]
                rates["1 process, 1 thread"].append(
                    run([*py, "trainer.num_threads=1"], cwd, 1)["steps_per_s"])
                rates[f"1 process, {args.ranks} threads"].append(
                    run([*py, f"trainer.num_threads={args.ranks}"], cwd, args.ranks)
                    ["steps_per_s"])
                m = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                         f"--nproc_per_node={args.ranks}", "-m", "pinn.train", *common],
                        cwd, 1)
                rates[f"{args.ranks} ranks, 1 thread each"].append(m["steps_per_s"])
                nbytes = m["allreduce_bytes_per_evaluation"]
        for name, values in rates.items():
            rows.append((n, name, statistics.median(values), min(values), max(values), nbytes))
    print("| interior points | how | steps/s (median) | min | max | gradient bytes "
          "all-reduced per evaluation |")
    print("|---|---|---|---|---|---|")
    for n, name, med, lo, hi, nbytes in rows:
        shown = nbytes if "ranks" in name else "-"
        print(f"| {n} | {name} | {med:.1f} | {lo:.1f} | {hi:.1f} | {shown} |")


if __name__ == "__main__":
    main()
