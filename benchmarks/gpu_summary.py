"""The one-page summary of a GPU check (benchmarks/gpu_check.sh): the machine, the tests, the
default and precise runs on the GPU, and the step timings, as Markdown on stdout.

    python benchmarks/gpu_summary.py OUT
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rc(out: Path, name: str) -> str:
    rc = _read(out / f"{name}.rc").strip()
    return {"": "not run", "0": "ok", "124": "TIMED OUT", "137": "KILLED"}.get(rc, f"exit {rc}")


def run_row(out: Path, name: str) -> str:
    m = _json(out / name / "metrics.json")
    if m is None:
        return f"| {name} | {_rc(out, name)} | no metrics.json | | | | |"
    errors = ", ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in m.items()
                       if k.startswith("error/l2_rel/"))
    return (f"| {name} | {m.get('status')} | {errors} | {m.get('wall_time_s', 0):.1f} | "
            f"{m.get('train_time_s', 0):.1f} | {m.get('steps_per_s', 0):.1f} | "
            f"{m.get('steps')} ({m.get('qn_iterations', 0)} QN) |")


def bench_rows(out: Path, name: str) -> list:
    data = _json(out / f"{name}.json")
    if data is None:
        return [f"| {name} | {_rc(out, name)} | | | | |"]
    rows = []
    for case in data.get("cases", []):
        for engine, r in case["engines"].items():
            rows.append(f"| {case['case']} ({case.get('points')} points) | {engine} | "
                        f"{r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['ratio']:.2f} | "
                        f"{r.get('compile_s') or 0:.1f} |")
    return rows


def main(out: Path) -> str:
    lines = ["# GPU check", "", "## Machine", "", "```", _read(out / "machine.txt").strip(),
             "```", "", "## Tests", ""]
    tail = [ln for ln in _read(out / "tests.txt").splitlines() if ln.strip()]
    lines += [f"{_rc(out, 'tests')}: {tail[-1] if tail else 'no output'}", ""]
    skipped = [ln for ln in tail if ln.startswith(("SKIPPED", "FAILED", "ERROR"))]
    lines += [f"    {ln}" for ln in skipped[:30]] + [""]
    lines += ["## Runs", "", "| run | status | relative L2 | wall s | train s | steps/s | steps |",
              "|---|---|---|---|---|---|---|", run_row(out, "default_run"),
              run_row(out, "precise"), ""]
    lines += ["## Step timings (pinn.bench, ms per Adam step)", "",
              "| case | engine | median ms | min ms | x plain | compile s |",
              "|---|---|---|---|---|---|"]
    for name in ("bench_10k", "bench_100k", "bench_1m"):
        lines += bench_rows(out, name)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python benchmarks/gpu_summary.py OUT", file=sys.stderr)
        sys.exit(2)
    print(main(Path(sys.argv[1])), end="")
