"""Dense quasi-Newton methods and their line search, against scipy and the update formulas."""
import math

import numpy as np
import pytest
import scipy.optimize as so
import torch

from pinn.optim import DenseQuasiNewton, strong_wolfe, update_coefficients, update_inverse_hessian
from pinn.optim.stages import DenseStage, check_quasi_newton


# -- test functions (numpy): value and gradient ------------------------------------------------
def rosenbrock(x):
    return so.rosen(x), so.rosen_der(x)


_A = np.random.default_rng(0).standard_normal((20, 20))
_Q = _A @ _A.T + np.eye(20)
_B = np.ones(20)


def quadratic(x):
    return 0.5 * x @ _Q @ x - _B @ x, _Q @ x - _B


def powell_singular(x):  # extended Powell singular function, n a multiple of 4
    x1, x2, x3, x4 = x[0::4], x[1::4], x[2::4], x[3::4]
    f = ((x1 + 10 * x2) ** 2 + 5 * (x3 - x4) ** 2 + (x2 - 2 * x3) ** 4
         + 10 * (x1 - x4) ** 4).sum()
    g = np.zeros_like(x)
    g[0::4] = 2 * (x1 + 10 * x2) + 40 * (x1 - x4) ** 3
    g[1::4] = 20 * (x1 + 10 * x2) + 4 * (x2 - 2 * x3) ** 3
    g[2::4] = 10 * (x3 - x4) - 8 * (x2 - 2 * x3) ** 3
    g[3::4] = -10 * (x3 - x4) - 40 * (x1 - x4) ** 3
    return f, g


def scipy_iterates(fun, x0, maxiter, gtol=1e-6):
    """scipy's BFGS iterates up to the first whose gradient norm is below ``gtol``: beyond it
    both searches work on differences of a few ulps, where which step each accepts depends on
    rounding (scipy 1.17 takes two steps on the quadratic at |g| ~ 1e-8 where ours finds none)."""
    xs = []
    so.minimize(fun, x0, jac=True, method="BFGS", options={"maxiter": maxiter, "gtol": 0},
                callback=lambda intermediate_result: xs.append(intermediate_result.x.copy()))
    for k, x in enumerate(xs):
        if np.linalg.norm(fun(x)[1]) <= gtol:
            return xs[:k + 1]
    return xs


def torch_closure(fun, p, opt):
    def closure():
        opt.zero_grad()
        f, g = fun(p.detach().numpy())
        p.grad = torch.tensor(g)
        return torch.tensor(f)

    return closure


def our_iterates(fun, x0, n, method="bfgs"):
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = DenseQuasiNewton([p], method=method, max_evaluations=99)
    closure = torch_closure(fun, p, opt)
    xs = []
    for _ in range(n):
        opt.step(closure)
        assert "failed" not in opt.last, opt.last
        xs.append(p.detach().numpy().copy())
    return xs


# Powell's singular function amplifies rounding about 300x per iteration (scipy itself, started
# one ulp away, drifts 1e-9 by iteration 5), so it is compared over its first 5 iterations.
@pytest.mark.parametrize("fun, x0, maxiter, tol", [
    (rosenbrock, np.array([-1.2, 1.0, -0.5, 0.8, 1.3]), 200, 1e-9),
    (quadratic, np.zeros(20), 60, 1e-12),
    (powell_singular, np.tile([3.0, -1.0, 0.0, 1.0], 2), 5, 1e-10),
])
def test_bfgs_takes_the_same_steps_as_scipy(fun, x0, maxiter, tol):
    ref = scipy_iterates(fun, x0, maxiter)
    ours = our_iterates(fun, x0, len(ref))
    assert len(ref) >= min(maxiter, 20)
    for k, (a, b) in enumerate(zip(ref, ours)):
        assert np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(a))), k


@pytest.mark.parametrize("method", ["bfgs", "ssbfgs", "ssbroyden"])
def test_every_method_minimizes_rosenbrock(method):
    p = torch.nn.Parameter(torch.tensor([-1.2, 1.0, -0.5, 0.8, 1.3], dtype=torch.float64))
    opt = DenseQuasiNewton([p], method=method)
    closure = torch_closure(rosenbrock, p, opt)
    for k in range(200):
        opt.step(closure)
        if "failed" in opt.last:  # converged to rounding: no further decrease possible
            break
    assert rosenbrock(p.detach().numpy())[0] < 1e-16, (k, opt.last)


def test_line_search_matches_scipy_and_satisfies_strong_wolfe():
    # scipy's More-Thuente search is not public API; its BFGS (compared above) uses it.
    line_search_wolfe1 = pytest.importorskip("scipy.optimize._linesearch").line_search_wolfe1
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.standard_normal(4) * 1.5
        g = so.rosen_der(x)
        d = -g / np.linalg.norm(g) * rng.uniform(0.01, 3.0)
        f0, d0 = so.rosen(x), float(g @ d)
        ref = line_search_wolfe1(so.rosen, so.rosen_der, x, d, gfk=g, old_fval=f0,
                                 c1=1e-4, c2=0.9, amax=1e100, amin=1e-100)
        ours = strong_wolfe(lambda a: (so.rosen(x + a * d), float(so.rosen_der(x + a * d) @ d)),
                            f0, d0, step=1.0)
        assert ours.ok
        assert ours.value <= f0 + 1e-4 * ours.step * d0
        assert abs(ours.slope) <= 0.9 * abs(d0)
        # The same algorithm: scipy finds a step on every one of these draws, and the same one.
        assert ref[0] is not None
        assert ours.step == pytest.approx(ref[0], rel=1e-10)


def test_line_search_reports_what_it_cannot_do():
    # Not a descent direction.
    r = strong_wolfe(lambda a: (a, 1.0), 0.0, 1.0)
    assert not r.ok and "descent" in r.message
    # A slope that contradicts the values (a broken gradient): no step satisfies both.
    r = strong_wolfe(lambda a: (a * a + a, -1.0), 0.0, -1.0, max_evaluations=30)
    assert not r.ok and r.evaluations <= 30
    # Non-finite values.
    r = strong_wolfe(lambda a: (math.nan, -1.0), 0.0, -1.0)
    assert not r.ok and "non-finite" in r.message
    # Out of evaluations: the step reported is one that was evaluated, with its value.
    seen = {}

    def phi(a):
        seen[a] = (math.cos(3 * a) + 0.1 * a, -3 * math.sin(3 * a) + 0.1)
        return seen[a]

    r = strong_wolfe(phi, 1.0, -0.5, step=5.0, max_evaluations=2)
    assert not r.ok and "after 2 evaluations" in r.message
    assert r.step in seen and (r.value, r.slope) == seen[r.step]


# -- the update formulas -----------------------------------------------------------------------
def random_pair(n=7, seed=0):
    """An SPD H, a gradient g, a step along -H g and a pair (s, y) with y's > 0."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    H = M @ M.T + n * np.eye(n)
    A = rng.standard_normal((n, n))
    hess = A @ A.T + 0.5 * np.eye(n)  # the curvature that produces y
    g = rng.standard_normal(n)
    step = 0.7
    s = -step * H @ g
    y = hess @ s
    return H, g, step, s, y


def test_bfgs_update_equals_the_product_form():
    H, g, step, s, y = random_pair()
    rho = 1 / (y @ s)
    I = np.eye(len(s))
    expected = (I - rho * np.outer(s, y)) @ H @ (I - rho * np.outer(y, s)) + rho * np.outer(s, s)
    Ht = torch.tensor(H)
    info = update_inverse_hessian(Ht, torch.tensor(s), torch.tensor(y), torch.tensor(g), step,
                                  "bfgs")
    assert info["tau"] == 1 and info["phi"] == 1
    assert np.abs(Ht.numpy() - expected).max() <= 1e-12 * np.abs(expected).max()


def test_ssbfgs_is_bfgs_of_the_scaled_matrix():
    for seed in range(5):
        H, g, step, s, y = random_pair(seed=seed)
        b = (s @ np.linalg.solve(H, s)) / (y @ s)  # s'B s / y's with B = H^-1
        tau = min(1.0, 1.0 / b)
        rho = 1 / (y @ s)
        I = np.eye(len(s))
        expected = ((I - rho * np.outer(s, y)) @ (H / tau) @ (I - rho * np.outer(y, s))
                    + rho * np.outer(s, s))
        Ht = torch.tensor(H)
        info = update_inverse_hessian(Ht, torch.tensor(s), torch.tensor(y), torch.tensor(g),
                                      step, "ssbfgs")
        assert info["b"] == pytest.approx(b, rel=1e-12) and info["tau"] == pytest.approx(tau)
        assert np.abs(Ht.numpy() - expected).max() <= 1e-11 * np.abs(expected).max()


@pytest.mark.parametrize("seed", range(6))
def test_ssbroyden_inverse_update_inverts_the_direct_broyden_update(seed):
    """The inverse-form update with phi = (1 - theta) / (1 + a theta) must be the inverse of
    the direct self-scaled Broyden-class update with parameter theta:
    B+ = tau (B - B s s'B / s'Bs + theta s'Bs w w') + y y' / y's, w = y/y's - Bs/s'Bs."""
    H, g, step, s, y = random_pair(seed=seed)
    n = len(s)
    Ht = torch.tensor(H)
    info = update_inverse_hessian(Ht, torch.tensor(s), torch.tensor(y), torch.tensor(g), step,
                                  "ssbroyden")
    B = np.linalg.inv(H)
    Bs, sBs, ys = B @ s, s @ B @ s, y @ s
    w = y / ys - Bs / sBs
    theta, tau = info["theta"], info["tau"]
    B_new = tau * (B - np.outer(Bs, Bs) / sBs + theta * sBs * np.outer(w, w)) + np.outer(y, y) / ys
    assert np.abs(Ht.numpy() @ B_new - np.eye(n)).max() < 1e-9
    assert np.linalg.eigvalsh(Ht.numpy()).min() > 0  # stays positive definite


@pytest.mark.parametrize("method", ["bfgs", "ssbfgs", "ssbroyden"])
def test_every_update_satisfies_the_secant_condition(method):
    H, g, step, s, y = random_pair(seed=3)
    Ht = torch.tensor(H)
    update_inverse_hessian(Ht, torch.tensor(s), torch.tensor(y), torch.tensor(g), step, method)
    assert np.abs(Ht.numpy() @ y - s).max() <= 1e-12 * np.abs(s).max()
    assert np.abs(Ht.numpy() - Ht.numpy().T).max() <= 1e-12 * np.abs(H).max()


def test_ssbroyden_coefficients_follow_the_published_choice():
    """Spot values of theta, tau, phi from the formulas in pinn.optim.dense (eqs. 13-23),
    evaluated here independently with numpy for b < 1, b = 1 and b > 1."""
    n = 100
    for b, h in [(0.5, 3.0), (1.0, 1.5), (2.0, 0.8), (4.0, 0.3)]:
        a = b * h - 1
        rho_m = min(1, h * (1 - np.sqrt(a / (1 + a))))
        theta = max((rho_m - 1) / a, min(1 / rho_m, (1 - b) / b))
        sigma = 1 + theta * a
        sn = sigma ** (1 / (1 - n))
        tau = min(min(1, 1 / b) * sn, sigma) if theta <= 0 else min(1, 1 / b) * min(sn, 1 / theta)
        c = update_coefficients("ssbroyden", b, h, n)
        assert c["theta"] == pytest.approx(theta, rel=1e-14)
        assert c["tau"] == pytest.approx(tau, rel=1e-14)
        assert c["phi"] == pytest.approx((1 - theta) / (1 + a * theta), rel=1e-14)


def test_non_positive_curvature_is_skipped_and_reported():
    H, g, step, s, y = random_pair()
    Ht = torch.tensor(H)
    info = update_inverse_hessian(Ht, torch.tensor(s), -torch.tensor(y), torch.tensor(g), step,
                                  "ssbroyden")
    assert "skipped" in info and "curvature" in info["skipped"]
    assert torch.equal(Ht, torch.tensor(H))


# -- the optimizer as a torch optimizer -------------------------------------------------------
@pytest.mark.parametrize("method", ["bfgs", "ssbroyden"])
def test_state_dict_resumes_bit_exactly(method):
    x0 = np.array([-1.2, 1.0, -0.5, 0.8, 1.3, 0.2])

    def make():
        p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
        opt = DenseQuasiNewton([p], method=method)
        return p, opt, torch_closure(rosenbrock, p, opt)

    p, opt, closure = make()
    for _ in range(30):
        opt.step(closure)
    straight = p.detach().clone()

    p, opt, closure = make()
    for _ in range(12):
        opt.step(closure)
    state, params = opt.state_dict(), p.detach().clone()
    p2, opt2, closure2 = make()
    with torch.no_grad():
        p2.copy_(params)
    opt2.load_state_dict(state)
    for _ in range(18):
        opt2.step(closure2)
    assert torch.equal(p2.detach(), straight)


def test_a_network_too_large_for_a_dense_method_is_refused():
    net = torch.nn.Linear(100, 100).double()  # 10,100 parameters
    with pytest.raises(ValueError, match=r"0\.76 GiB .*3 such matrices at once, 2\.28 GiB"
                                         r".*optim\.qn=lbfgs"):
        DenseQuasiNewton(net.parameters(), method="ssbroyden", max_params=10_000)

    class O:
        qn, max_dense_params = "bfgs", 10_000

    with pytest.raises(ValueError, match="optim.max_dense_params=10,000"):
        check_quasi_newton(O, list(net.parameters()))
    O.max_dense_params = 20_000
    check_quasi_newton(O, list(net.parameters()))


def test_a_failing_line_search_resets_then_stalls_and_never_moves_the_parameters():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    stage = DenseStage([p], "bfgs", c1=1e-4, c2=0.9, max_evaluations=10, max_params=100)
    good = {"on": True}

    def evaluate():
        f = (p ** 2).sum()
        f.backward()
        if not good["on"]:  # a gradient that contradicts the values: no Wolfe step exists
            p.grad.neg_()
        return f, {"res": f}

    for _ in range(2):
        stage.step(evaluate)
    assert stage.optimizer.updates_since_reset > 0
    good["on"] = False
    stage.invalidate()
    before = p.detach().clone()
    stage.step(evaluate)
    assert "reset" in stage.last and "stalled" not in stage.last
    assert torch.equal(p.detach(), before)
    stage.step(evaluate)
    assert "stalled" in stage.last and "line search" in stage.last["stalled"]
    assert torch.equal(p.detach(), before)


# -- a change of objective (redraw, BN calibration): no pair mixes two objectives ----------------
_QA = _Q[:6, :6] + 0.0
_QB = np.diag(np.arange(1.0, 7.0)) * 3.0 + 0.5 * np.ones((6, 6))  # positive definite


def _quadratic_stage(stage_name):
    """A stage on 0.5 x'Q x - 1'x whose Q can be switched, and the Q in use."""
    from pinn.optim.stages import LBFGSStage

    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6, dtype=torch.float64))
    which = {"Q": torch.tensor(_QA)}

    def evaluate():
        Q = which["Q"]
        f = 0.5 * p @ Q @ p - p.sum()
        f.backward()
        return f, {"res": f}

    if stage_name == "lbfgs":
        stage = LBFGSStage([p], lr=1.0, history=10)
    else:
        stage = DenseStage([p], stage_name, c1=1e-4, c2=0.9, max_evaluations=25, max_params=100)
    return p, which, evaluate, stage


def test_lbfgs_pairs_after_a_change_of_objective_come_from_one_objective():
    """Every curvature pair L-BFGS keeps satisfies y = Q s for the Q of the objective it was
    built on (a quadratic: the gradient difference is exact). A pair that mixed the old and
    the new objective's gradients would fit neither."""
    p, which, evaluate, stage = _quadratic_stage("lbfgs")
    for _ in range(3):
        stage.step(evaluate)
    state = stage.optimizer.state[p]
    before = len(state["old_dirs"])
    assert before >= 2
    QA, QB = torch.tensor(_QA), torch.tensor(_QB)
    for y, s in zip(state["old_dirs"], state["old_stps"]):
        assert torch.allclose(y, QA @ s, rtol=1e-10, atol=1e-13)
    kept = [y.clone() for y in state["old_dirs"]]
    which["Q"] = QB  # new objective (as after a redraw)
    stage.invalidate()
    stage.step(evaluate)
    assert len(state["old_dirs"]) == before  # no pair across the change; the memory is kept
    assert all(torch.equal(a, b) for a, b in zip(kept, state["old_dirs"]))
    for _ in range(2):
        stage.step(evaluate)
    new = list(zip(state["old_dirs"], state["old_stps"]))[before:]
    assert len(new) == 2
    for y, s in new:
        assert torch.allclose(y, QB @ s, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", ["bfgs", "ssbroyden"])
def test_dense_pairs_after_a_change_of_objective_come_from_one_objective(method):
    """The dense stage builds each pair inside one iteration: after a change of objective the
    updated H satisfies the secant condition H y = s with y = Q_new s."""
    p, which, evaluate, stage = _quadratic_stage(method)
    for _ in range(3):
        stage.step(evaluate)
    which["Q"] = torch.tensor(_QB)
    stage.invalidate()
    x0 = p.detach().clone()
    stage.step(evaluate)
    assert "reset" not in stage.last
    s = p.detach() - x0
    H = stage.optimizer._state["H"]
    assert torch.allclose(H @ (which["Q"] @ s), s, rtol=1e-9, atol=1e-12)


def test_the_dense_step_returns_the_loss_in_float64():
    p = torch.nn.Parameter(torch.tensor([0.3, -0.7], dtype=torch.float64))
    opt = DenseQuasiNewton([p], method="bfgs")
    values = []

    def closure():
        opt.zero_grad()
        f = (p ** 2).sum() + 1.0 / 3.0
        f.backward()
        values.append(f.item())
        return f

    out = opt.step(closure)
    assert out.dtype == torch.float64 and out.item() == values[-1]


def test_the_dense_matrix_of_an_lbfgs_memory_gives_its_two_loop_direction():
    """lbfgs_inverse_hessian(state) @ g equals L-BFGS's two-loop recursion on g (written out
    here), for the memory torch's L-BFGS keeps after a few iterations on Rosenbrock."""
    from pinn.optim.stages import LBFGSStage, lbfgs_inverse_hessian

    p = torch.nn.Parameter(torch.tensor([-1.2, 1.0, -0.5, 0.8, 1.3], dtype=torch.float64))

    def evaluate():
        f, g = rosenbrock(p.detach().numpy())
        p.grad = torch.tensor(g)
        return torch.tensor(f, dtype=torch.float64), {}

    stage = LBFGSStage([p], lr=1.0, history=4)
    for _ in range(8):
        stage.step(evaluate)
    st = stage.optimizer.state[p]
    H, pairs = lbfgs_inverse_hessian(stage.state_dict(), 5, torch.float64, p.device)
    assert pairs == len(st["old_dirs"]) == 4
    g = torch.tensor(np.random.default_rng(3).standard_normal(5))
    q, alphas = g.clone(), []
    for s, y in reversed(list(zip(st["old_stps"], st["old_dirs"]))):
        a = torch.dot(s, q) / torch.dot(y, s)
        alphas.append(a)
        q -= a * y
    r = q * st["H_diag"]
    for (s, y), a in zip(zip(st["old_stps"], st["old_dirs"]), reversed(alphas)):
        b = torch.dot(y, r) / torch.dot(y, s)
        r += (a - b) * s
    assert torch.allclose(H @ g, r, rtol=1e-12, atol=1e-14)
    assert torch.allclose(H, H.T, rtol=0, atol=1e-12 * H.abs().max())


PEAK_SCRIPT = """
import re, sys
from pathlib import Path
from tests.conftest import compose_cfg
from pinn.paths import RunPaths
from pinn.train import build_trainer

def status(field):  # kB, from the kernel's account of this process
    return int(re.search(field + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

cfg = compose_cfg(["pde=heat", "precision=float64", "model.depth=2", "model.width=48",
                   "sampler.n_interior=64", "sampler.n_initial=16", "sampler.n_boundary=16",
                   "sampler.resample_every=3", "trainer.steps=2", "trainer.qn_steps=6",
                   "trainer.checkpoint_every=1", "trainer.progress=false",
                   "log.tensorboard=false", "pde.eval_nx=8", "pde.eval_nt=4",
                   "optim.qn=ssbroyden"])
tr = build_trainer(cfg, RunPaths(Path(sys.argv[1])))
marks = {}
qn_step = tr.qn_step

def first_qn_step():
    if "before" not in marks:  # the stage does not exist yet
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again here
        marks["before"] = status("VmRSS")
    return qn_step()

tr.qn_step = first_qn_step
assert tr.fit()["status"] == "completed"
tr._recover(tr.step)  # a rollback: the state copied back
n = sum(p.numel() for p in tr.model.parameters())
print(n, (status("VmHWM") - marks["before"]) * 1024)
"""


def test_the_dense_size_limit_counts_the_real_peak(tmp_path):
    """A dense stage through checkpoints (every step), two redraws and a rollback: the growth
    of the process's peak resident memory from the start of the stage (the kernel's high-water
    mark, reset there) is what dense_memory_bytes says (H is 52 MB here, far above everything
    else the stage allocates)."""
    import os

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident memory")
    import subprocess
    import sys

    from pinn.optim.dense import DENSE_COPIES, dense_memory_bytes
    from tests.conftest import REPO

    p = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    n, growth = map(int, p.stdout.split()[-2:])
    one = n * n * 8
    assert growth <= dense_memory_bytes(n, 8) + one // 4, growth / one
    assert growth >= (DENSE_COPIES - 1) * one, growth / one  # the count is not loose either
