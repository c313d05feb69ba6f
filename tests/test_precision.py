"""The float64 probe: measured rates, their cache, and the one line for slow-float64 GPUs."""
import json

import pytest
import torch

from pinn.precision import SLOW_RATIO, cached_rates, device_note, float64_note, measure


def test_the_probe_measures_both_precisions_on_the_cpu():
    rates = measure(torch.device("cpu"), size=128, reps=2)
    assert set(rates) == {"float32", "float64"} and all(v > 0 for v in rates.values())


def test_rates_are_measured_once_per_device_and_cached(tmp_path):
    path = tmp_path / "precision.json"
    calls = []

    def probe():
        calls.append(1)
        return {"float32": 640.0, "float64": 10.0}

    assert cached_rates("Card A", probe, path) == {"float32": 640.0, "float64": 10.0}
    assert cached_rates("Card A", probe, path) == {"float32": 640.0, "float64": 10.0}
    assert len(calls) == 1  # the second answer came from the file
    cached_rates("Card B", lambda: {"float32": 2.0, "float64": 1.0}, path)
    saved = json.loads(path.read_text())
    assert sorted(k.split(" | ")[0] for k in saved) == ["Card A", "Card B"]
    path.write_text("not json")  # a broken cache is measured around
    assert cached_rates("Card A", probe, path)["float64"] == 10.0 and len(calls) == 2


def test_an_unwritable_cache_is_not_fatal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rates = cached_rates("Card", lambda: {"float32": 1.0, "float64": 1.0}, blocker / "x.json")
    assert rates == {"float32": 1.0, "float64": 1.0}


def test_one_line_only_where_float64_is_far_slower():
    assert float64_note("H200", {"float32": 60000.0, "float64": 50000.0}) is None
    assert float64_note("Card", {"float32": SLOW_RATIO * 0.99, "float64": 1.0}) is None
    line = float64_note("GeForce RTX 4090", {"float32": 80000.0, "float64": 1250.0})
    assert "\n" not in line and line.startswith("precision=float64 on GeForce RTX 4090")
    assert "1/64 of the float32 rate" in line and "precision=float32" in line


def test_no_probe_off_cuda_or_in_float32(tmp_path):
    path = tmp_path / "never.json"
    assert device_note(torch.device("cpu"), "float64", path) is None
    assert device_note(torch.device("cpu"), "float32", path) is None
    assert not path.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_probe_on_this_gpu(tmp_path):
    device = torch.device("cuda")
    rates = measure(device, size=512, reps=2)
    assert all(v > 0 for v in rates.values())
    note = device_note(device, "float64", tmp_path / "p.json")
    ratio = rates["float32"] / rates["float64"]
    assert (note is None) == (ratio < SLOW_RATIO) or abs(ratio - SLOW_RATIO) < 2
