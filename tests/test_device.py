"""Device choice (``device=``), portable checkpoints, TF32 and the bench's ``--device``.

Tests that need CUDA are marked and skip on a CPU-only machine with a reason: a run moved
between devices and a checkpoint made of CPU tensors can only be shown where there is a second
device. The CPU tests check what can be checked there: the choice and its errors, the recorded
device, that the state walkers move every tensor (to the 'meta' device), and that a resume may
change the ``device`` setting.
"""
from __future__ import annotations

import json

import pytest
import torch

import pinn
from pinn.checkpoint import load_checkpoint
from pinn.device import (DeviceError, configure_tf32, device_info, resolve_device, to_cpu,
                         to_device)
from pinn.paths import RunPaths
from pinn.sampling import Sampler
from pinn.train import build_trainer
from tests.conftest import compose_cfg, run_cli

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device; this machine has none")
no_cuda = pytest.mark.skipif(CUDA, reason="checks the error on machines without CUDA")

TINY = ["trainer.steps=6", "trainer.qn_steps=4", "model.depth=2", "model.width=8",
        "sampler.n_interior=64", "sampler.n_initial=16", "sampler.n_boundary=16",
        "sampler.resample_every=3", "trainer.log_every=1", "trainer.eval_every=5",
        "trainer.checkpoint_every=2", "pde.eval_nx=16", "pde.eval_nt=8", "log.figures=false"]


def tensors(obj):
    """Every tensor inside nested dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


# -- the choice ---------------------------------------------------------------------------

def test_auto_and_cpu_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cpu:0", "tpu", ""])
def test_invalid_names_are_refused_with_the_key_and_the_allowed_values(bad):
    with pytest.raises(DeviceError, match=r"^device=.* is not allowed: auto, cpu, cuda or "
                                          r"cuda:N$"):
        resolve_device(bad)


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_refused_in_one_line(spec):
    with pytest.raises(DeviceError) as e:
        resolve_device(spec)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"device={spec} is not available on this machine")
    assert "use device=cpu or device=auto" in msg


@needs_cuda
def test_a_missing_cuda_index_names_the_devices_present():
    n = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"has {n} CUDA device"):
        resolve_device(f"cuda:{n}")


@no_cuda
def test_cli_device_cuda_on_a_cpu_machine_exits_without_a_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli(["device=cuda", *TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: device=cuda is not available")
    assert not run_dir.exists()


def test_cli_invalid_device_exits_without_a_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli(["device=gpu", *TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: device='gpu' is not allowed: auto, cpu, cuda or cuda:N"]
    assert not run_dir.exists()


def test_device_info_names_the_device():
    info = device_info(torch.device("cpu"))
    assert info["device"] == "cpu" and info["device_name"]


def test_tf32_is_off_by_default_and_switchable():
    before = torch.get_float32_matmul_precision()
    try:
        configure_tf32(torch.device("cpu"), True)
        assert torch.get_float32_matmul_precision() == "high"
        configure_tf32(torch.device("cpu"), False)
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision(before)
    assert compose_cfg([]).tf32 is False


def test_to_device_and_to_cpu_walk_nested_state():
    """Every tensor moves, wherever it sits, and nothing else changes. The 'meta' device (shapes
    without data) stands in for a GPU on machines without one: a tensor left behind would
    still be on the CPU."""
    state = {"a": torch.ones(2), "b": [torch.zeros(1), (torch.ones(1), 3)], "c": "x"}
    moved = to_device(state, torch.device("meta"))
    assert [t.device.type for t in tensors(moved)] == ["meta"] * 3
    assert moved["b"][1][1] == 3 and moved["c"] == "x" and isinstance(moved["b"][1], tuple)
    assert [t.device.type for t in tensors(to_cpu(state))] == ["cpu"] * 3


# -- runs ---------------------------------------------------------------------------------

def test_run_records_its_device(tmp_path):
    cfg = compose_cfg([*TINY, "device=cpu"])
    metrics = build_trainer(cfg, RunPaths(tmp_path)).fit()
    assert metrics["device"] == "cpu" and metrics["device_name"]


def test_a_resume_may_change_the_device_setting():
    """``device`` is free between a run and its continuation (a GPU run continued on a CPU
    machine): the resume check finds no difference, and ``trainer.resume=auto`` ignores it.
    That the state then really crosses devices is checked where there is a GPU
    (test_trained_on_cuda_resumes_and_loads_on_cpu)."""
    from pinn.train import FREE_KEYS, shape_differences

    saved, now = compose_cfg([*TINY, "device=cuda"]), compose_cfg([*TINY, "device=cpu"])
    assert shape_differences(now, saved) == []
    assert "device" in FREE_KEYS
    assert shape_differences(compose_cfg([*TINY, "precision=float32"]), saved) == [
        "precision: 'float64' -> 'float32'"]


def test_load_run_takes_a_device(tmp_path):
    build_trainer(compose_cfg([*TINY, "device=cpu"]), RunPaths(tmp_path)).fit()
    model, _ = pinn.load_run(tmp_path, device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(DeviceError, match="device='gpu' is not allowed"):
        pinn.load_run(tmp_path, device="gpu")


# -- CUDA ---------------------------------------------------------------------------------

@needs_cuda
def test_same_points_on_cpu_and_cuda():
    def draw(device):
        s = Sampler("sobol", 64, 8, 8, (-1.0, 1.0, 0.0, 1.0), torch.float64,
                    torch.Generator().manual_seed(3), rad=(1.0, 1.0, 2), device=device)
        s.sample()
        return s.sample(lambda x, t: (x * t).abs().reshape(-1))

    a, b = draw(torch.device("cpu")), draw(torch.device("cuda"))
    for k in vars(a):
        assert torch.equal(getattr(a, k), getattr(b, k).cpu())


@needs_cuda
def test_trained_on_cuda_resumes_and_loads_on_cpu(tmp_path):
    gpu = build_trainer(compose_cfg([*TINY, "device=cuda", "precision=float64"]),
                        RunPaths(tmp_path))
    metrics = gpu.fit()
    assert metrics["device"].startswith("cuda")
    ckpt = load_checkpoint(RunPaths(tmp_path).last_checkpoint)
    assert all(t.device.type == "cpu" for t in tensors([ckpt.model, ckpt.extra]))
    model_cpu, _ = pinn.load_run(tmp_path, device="cpu")
    model_gpu, _ = pinn.load_run(tmp_path, device="cuda")
    xt = torch.rand(100, 2, dtype=torch.float64)
    assert torch.allclose(model_cpu(xt), model_gpu(xt.cuda()).cpu(), rtol=0, atol=1e-12)
    cpu = build_trainer(compose_cfg([*TINY, "device=cpu", "trainer.steps=8",
                                     "precision=float64"]), RunPaths(tmp_path),
                        resume_step=ckpt.step)
    cpu.load_training_state(ckpt.extra["training"])
    assert cpu.fit()["status"] == "completed"


@needs_cuda
def test_trained_on_cpu_resumes_on_cuda(tmp_path):
    cpu = build_trainer(compose_cfg([*TINY, "device=cpu", "precision=float64"]),
                        RunPaths(tmp_path))
    assert cpu.fit()["device"] == "cpu"
    ckpt = load_checkpoint(RunPaths(tmp_path).last_checkpoint)
    gpu = build_trainer(compose_cfg([*TINY, "device=cuda", "trainer.steps=8",
                                     "precision=float64"]), RunPaths(tmp_path),
                        resume_step=ckpt.step)
    gpu.load_training_state(ckpt.extra["training"])
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    saved = ckpt.extra["training"]["model"]
    assert all(torch.equal(v.cpu(), saved[k]) for k, v in gpu.model.state_dict().items())
    metrics = gpu.fit()
    assert metrics["status"] == "completed" and metrics["device"].startswith("cuda")


# -- the benchmark ------------------------------------------------------------------------

def test_bench_runs_on_the_cpu_and_records_the_device(tmp_path, capsys):
    from pinn.bench import main
    out = tmp_path / "bench.json"
    assert main(["--cases", "c", "--reps", "2", "--warmup", "1", "--engines", "plain,taylor",
                 "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["machine"]["device"] == "cpu"
    engines = result["cases"][0]["engines"]
    assert set(engines) == {"plain", "taylor"}
    assert all(e["median_ms"] > 0 for e in engines.values())


def test_bench_times_a_case_on_other_points(tmp_path):
    from pinn.bench import main, with_points
    from pinn.bench_cases import CASES
    case, _, (x, t) = with_points(CASES["b"], 300)
    assert case.n_points == 300 and x.shape == (300, 1) and t.shape == (300, 1)
    assert -1 <= float(x.min()) and float(x.max()) <= 1 and 0 <= float(t.min())
    out = tmp_path / "bench.json"
    assert main(["--cases", "b", "--points", "300", "--reps", "2", "--warmup", "1",
                 "--engines", "plain,taylor", "--device", "cpu", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["cases"][0]["points"] == 300


@pytest.mark.parametrize("args,expected", [
    (["--engines", "plain,taylor+graph", "--device", "cpu"],
     "error: --engines taylor+graph captures the step in a CUDA graph: it needs --device cuda"),
    (["--points", "0"], "error: --points=0 is not allowed: a number of points >= 1"),
])
def test_bench_refuses_graphs_off_cuda_and_no_points(capsys, args, expected):
    from pinn.bench import main
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected)


@needs_cuda
def test_bench_captured_steps_on_cuda(tmp_path):
    from pinn.bench import main
    out = tmp_path / "bench.json"
    assert main(["--cases", "b", "--reps", "3", "--warmup", "1", "--device", "cuda",
                 "--engines", "plain,plain+graph,taylor+graph", "--json", str(out)]) == 0
    engines = json.loads(out.read_text())["cases"][0]["engines"]
    assert set(engines) == {"plain", "plain+graph", "taylor+graph"}


def test_bench_refuses_an_unknown_device(capsys):
    from pinn.bench import main
    with pytest.raises(SystemExit) as e:
        main(["--device", "gpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device='gpu' is not allowed")


@pytest.mark.parametrize("args,expected", [
    (["--cases", "x"], "error: unknown case 'x': one of a, b, c"),
    (["--engines", "taylor"], "error: the plain engine is the reference"),
    (["--reps", "abc"], "error: argument --reps: invalid int value: 'abc'"),
])
def test_bench_errors_are_one_line(capsys, args, expected):
    from pinn.bench import main
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected)
