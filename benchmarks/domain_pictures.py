"""Draw each shipped domain of shapes with the points training takes from it.

    python benchmarks/domain_pictures.py [--out docs/images/domains.png] [--seed 0]

One panel per problem with ``pde.geometry`` (the 2-D space part of problems in time): the
interior points of one draw of ``experiment=precise``'s sampler (grey), the boundary points of
each named piece (a colour per piece, named in the legend) and every tenth point's outward
normal. The points come from the project's own sampler (pinn.sampling.Sampler), seeded.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pinn.config import CONFIG_DIR, register_configs
from pinn.figures import pyplot
from pinn.pdes import build_pde
from pinn.sampling import Sampler

PROBLEMS = ("laplace_lshape", "poisson_holes", "heat_annulus", "cylinder")


def draw(problem: str, seed: int, n_interior: int = 2000, n_boundary: int = 600):
    from hydra import compose, initialize_config_dir

    register_configs()

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name="train", overrides=[f"pde={problem}"])
    pde = build_pde(cfg.pde)
    sampler = Sampler("sobol", n_interior, 1, n_boundary, pde.domain, torch.float64,
                      torch.Generator().manual_seed(seed))
    return pde, sampler.sample()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/domains.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 10), constrained_layout=True)
    for ax, problem in zip(axes.flat, PROBLEMS):
        pde, batch = draw(problem, args.seed)
        inner = batch.interior.numpy()
        ax.scatter(inner[:, 0], inner[:, 1], s=1, c="0.75", linewidths=0)
        for j, (pts, normals) in enumerate(zip(batch.boundary, batch.normals)):
            p, n = pts.numpy(), normals.numpy()
            ax.scatter(p[:, 0], p[:, 1], s=3, linewidths=0, label=pde.region.pieces[j].name)
            ax.quiver(p[::10, 0], p[::10, 1], n[::10, 0], n[::10, 1], angles="xy",
                      scale_units="xy", scale=1 / (0.04 * max(pde.region.upper[0]
                                                          - pde.region.lower[0], 1e-9)),
                      width=0.003, color="k", alpha=0.6)
        ax.set_aspect("equal")
        ax.set_title(f"pde={problem}: {inner.shape[0]} interior, "
                     f"{sum(b.shape[0] for b in batch.boundary)} boundary points", fontsize=9)
        ax.legend(fontsize=7, markerscale=3, loc="upper center", bbox_to_anchor=(0.5, -0.1),
                  ncol=3, frameon=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
