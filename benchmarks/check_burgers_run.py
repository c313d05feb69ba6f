"""Evaluate a trained Burgers run against Raissi et al.'s published solution, independently of
pinn's own reference and evaluation code.

    python benchmarks/check_burgers_run.py outputs/<date>/<time> [path/to/burgers_shock.mat]

The published solution is ``burgers_shock.mat`` of Raissi, Perdikaris and Karniadakis's code
(github.com/maziarraissi/PINNs, file appendix/Data/burgers_shock.mat, 2.0 MB, sha256
f4d11e67...), for example:

    curl -LO https://github.com/maziarraissi/PINNs/raw/HEAD/appendix/Data/burgers_shock.mat

Without the second argument it is looked for in ../shared/data/reference/raissi_pinns/ beside
the checkout. The published grid is x = linspace(-1, 1, 256), t = 0, 0.01, ..., 0.99; the run's
metrics.json uses the same x and t = linspace(0, 1, 101), whose first 100 rows are the published
ones.
"""
import json
import sys
from pathlib import Path

import numpy as np

SOURCE = ("the published solution of Raissi et al. (github.com/maziarraissi/PINNs, "
          "appendix/Data/burgers_shock.mat)")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if argv else 2)
    run_dir = Path(argv[0])
    mat = Path(argv[1]) if len(argv) > 1 else (
        Path(__file__).resolve().parents[2] / "shared/data/reference/raissi_pinns/"
                                              "burgers_shock.mat")
    if not mat.is_file():
        fail(f"{mat} not found: this check needs {SOURCE}; download it (python "
             "benchmarks/check_burgers_run.py --help shows how) and give its path as the "
             "second argument")
    if not (run_dir / "metrics.json").is_file():
        fail(f"{run_dir} is not a finished run folder (no metrics.json)")
    import scipy.io
    import torch

    import pinn

    data = scipy.io.loadmat(mat)
    x, t, usol = data["x"].ravel(), data["t"].ravel(), data["usol"]  # usol[x_i, t_j]
    model, cfg = pinn.load_run(run_dir)
    if cfg.pde.name != "burgers":
        fail(f"{run_dir} is a run of pde={cfg.pde.name}; this check is for pde=burgers")
    X, T = np.meshgrid(x, t, indexing="ij")  # (256, 100), like usol
    xt = torch.tensor(np.stack([X.ravel(), T.ravel()], 1),
                      dtype=next(model.parameters()).dtype)
    with torch.no_grad():
        pred = model(xt)[:, 0].double().numpy().reshape(X.shape)
    err = np.linalg.norm(pred - usol) / np.linalg.norm(usol)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"relative L2 vs {mat.name} (256 x 100 grid): {err:.4e}")
    print(f"metrics.json error/l2_rel/u (256 x 101 grid): {metrics['error/l2_rel/u']:.4e}")


if __name__ == "__main__":
    main(sys.argv[1:])
