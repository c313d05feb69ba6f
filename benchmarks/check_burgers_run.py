"""Evaluate a trained Burgers run against Raissi et al.'s published solution, independently of
pinn's own reference and evaluation code.

    python benchmarks/check_burgers_run.py outputs/<date>/<time> [path/to/burgers_shock.mat]

The published grid is x = linspace(-1, 1, 256), t = 0, 0.01, ..., 0.99; the run's metrics.json
uses the same x and t = linspace(0, 1, 101), whose first 100 rows are the published ones.
"""
import json
import sys
from pathlib import Path

import numpy as np
import scipy.io
import torch

import pinn

if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    sys.exit(0 if len(sys.argv) >= 2 else 2)
run_dir = Path(sys.argv[1])
mat = Path(sys.argv[2]) if len(sys.argv) > 2 else (
    Path(__file__).resolve().parents[2] / "shared/data/reference/raissi_pinns/burgers_shock.mat")
data = scipy.io.loadmat(mat)
x, t, usol = data["x"].ravel(), data["t"].ravel(), data["usol"]  # usol[x_i, t_j]
model, cfg = pinn.load_run(run_dir)
X, T = np.meshgrid(x, t, indexing="ij")  # (256, 100), like usol
xt = torch.tensor(np.stack([X.ravel(), T.ravel()], 1), dtype=next(model.parameters()).dtype)
with torch.no_grad():
    pred = model(xt)[:, 0].double().numpy().reshape(X.shape)
err = np.linalg.norm(pred - usol) / np.linalg.norm(usol)
metrics = json.loads((run_dir / "metrics.json").read_text())
print(f"relative L2 vs {mat.name} (256 x 100 grid): {err:.4e}")
print(f"metrics.json error/l2_rel/u (256 x 101 grid): {metrics['error/l2_rel/u']:.4e}")
