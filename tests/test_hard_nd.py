"""Hard initial and boundary conditions on problems beyond (x, t) (pinn.nn.hard): exact on
the initial slice and the faces, derivatives through the transform against finite
differences, the loss terms it removes, each refusal, and a short run."""
from __future__ import annotations

import pytest
import torch

from pinn.coords import Derivative
from pinn.derivatives_nd import nd_derivatives
from pinn.fields import taylor_reason
from pinn.losses import loss_terms
from pinn.nn import HardConstraint, build_model
from pinn.paths import RunPaths
from pinn.pdes import build_pde
from pinn.sampling import Sampler
from pinn.train import build_trainer
from tests.conftest import compose_cfg

F64 = torch.float64
SMALL = ["precision=float64", "model.depth=2", "model.width=12", "model.activation=tanh"]


def _setup(pde_name, *overrides):
    cfg = compose_cfg([f"pde={pde_name}", *SMALL, *overrides])
    pde = build_pde(cfg.pde)
    return cfg, pde, build_model(cfg, pde)


def _box_points(pde, n=64, seed=0):
    lower = torch.tensor(pde.domain.lower, dtype=F64)
    upper = torch.tensor(pde.domain.upper, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    return lower + (upper - lower) * torch.rand(n, len(lower), generator=g, dtype=F64)


def test_the_initial_value_holds_exactly_and_the_faces_are_left_free():
    _, pde, model = _setup("heat2d", "model.hard_initial=true")
    assert isinstance(model.output_transform, HardConstraint)
    p = _box_points(pde)
    p[:, 2] = 0.0  # t = t_min
    with torch.no_grad():
        assert torch.equal(model(p), pde.initial_at(p))
        q = _box_points(pde, seed=1)
        assert (model(q) - pde.exact_at(q)).abs().max() > 1e-3  # an untrained network


def test_a_hard_boundary_is_zero_on_every_face_and_with_the_initial_value():
    _, pde, model = _setup("heat2d", "model.hard_initial=true", "model.hard_boundary=true")
    assert model.output_transform.imposes == ("ic", "bc")
    with torch.no_grad():
        for column in (0, 1):
            for value in (0.0, 1.0):
                p = _box_points(pde)
                p[:, column] = value
                assert model(p).abs().max() < 1e-15
        p = _box_points(pde)
        p[:, 2] = 0.0
        assert (model(p) - pde.initial_at(p)).abs().max() < 1e-15


@pytest.mark.parametrize("overrides", [["model.hard_initial=true"],
                                       ["model.hard_initial=true", "model.hard_boundary=true"],
                                       ["model.hard_boundary=true"]])
def test_derivatives_through_the_transform_match_finite_differences(overrides):
    """u_t, u_x, u_yy and u_xx of the transformed network in (x, y, t) (reverse mode) against
    central differences of the network's values, float64."""
    _, pde, model = _setup("heat2d", *overrides)
    p = _box_points(pde, n=40, seed=2) * 0.8 + 0.1  # inside, away from the faces
    wanted = [Derivative(0, a) for a in ((0, 0, 1), (1, 0, 0), (0, 2, 0), (2, 0, 0))]
    d = nd_derivatives(model, p, wanted, create_graph=False)
    with torch.no_grad():
        for w in wanted:
            axis = max(range(3), key=lambda i: w.alpha[i])
            e = torch.zeros(3, dtype=F64)
            if w.order == 1:
                h = 1e-5
                e[axis] = h
                fd = (model(p + e) - model(p - e))[:, 0] / (2 * h)
                tol = 1e-8
            else:
                h = 1e-3
                e[axis] = h
                fd = (model(p + e) - 2 * model(p) + model(p - e))[:, 0] / h**2
                tol = 1e-5
            scale = 1 + fd.abs().max()
            assert (d[w] - fd).abs().max() < tol * scale, (w, (d[w] - fd).abs().max())


def test_the_imposed_terms_leave_the_loss_and_the_taylor_engine_says_why():
    _, pde, model = _setup("heat2d", "model.hard_initial=true", "model.hard_boundary=true")
    batch = Sampler("sobol", 64, 16, 32, pde.domain, F64,
                    torch.Generator().manual_seed(0)).sample()
    assert set(loss_terms(model.double(), pde, batch)) == {"res"}
    _, _, soft = _setup("heat2d")
    assert set(loss_terms(soft, pde, batch)) == {"res", "ic", "bc"}
    reason = taylor_reason(model, pde.wanted)
    assert reason is not None and "differentiated by autograd" in reason
    assert taylor_reason(soft, pde.wanted) is None


@pytest.mark.parametrize("pde_name, overrides, message", [
    ("poisson2d", ["model.hard_initial=true"], "pde=poisson2d is steady"),
    ("kovasznay", ["model.hard_boundary=true"],
     "face left of pde=kovasznay has no Dirichlet condition on p"),
    ("taylor_green", ["model.hard_boundary=true"],
     "the condition on face left of pde=taylor_green is not 0"),
    ("poisson2d", ["model.hard_boundary=true"],
     "face top of pde=poisson2d has no Dirichlet condition on u"),
    ("heat2d", ["model.hard_boundary=true", "model.hard_initial=true",
                "pde.initial='cos(pi*x)*sin(2*pi*y)'"],
     "pde.initial is not 0 on face left"),
])
def test_conditions_a_hard_transform_cannot_hold_are_refused(pde_name, overrides, message):
    with pytest.raises(ValueError, match=message):
        _setup(pde_name, *overrides)


def test_a_run_with_hard_conditions_in_2d_trains_and_records_the_engine(tmp_path):
    cfg = compose_cfg(["pde=heat2d", *SMALL, "model.hard_initial=true",
                       "model.hard_boundary=true", "trainer.steps=30", "trainer.qn_steps=0",
                       "trainer.progress=false", "sampler.n_interior=128",
                       "pde.eval_points={x: 11, y: 11, t: 5}", "log.figures=false"])
    tr = build_trainer(cfg, RunPaths(tmp_path / "run"))
    metrics = tr.fit()
    assert metrics["status"] == "completed"
    assert "loss/ic" not in metrics and "loss/bc" not in metrics
    assert any("derivatives engine: autograd (taylor: the hard constraint" in e["event"]
               for e in tr.events)


def test_the_taylor_engine_declines_the_transform_on_two_columns_too():
    """A steady problem in (x, y) has two input columns like (x, t): the engine must not take
    the hard constraint for the (x, t) transform."""
    from pinn.taylor import taylor_partials, taylor_unsupported

    cfg = compose_cfg(["pde=poisson2d", *SMALL, "model.hard_boundary=true",
                       "pde.conditions.top=0"])
    pde = build_pde(cfg.pde)
    model = build_model(cfg, pde)
    assert "differentiated by autograd" in taylor_unsupported(model, pde.wanted)
    with pytest.raises(ValueError, match="differentiated by autograd"):
        taylor_partials(model, _box_points(pde), pde.wanted)
