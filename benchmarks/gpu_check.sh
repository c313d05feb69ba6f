#!/usr/bin/env bash
# The GPU check: everything pinn has to say about a GPU in one short run (under 8 minutes), on a
# bare machine that has python3 with a CUDA torch, numpy, scipy, matplotlib, tensorboard, tqdm
# and pytest, but not pinn's other dependencies and no network.
#
# Before (on a machine with the package index): `make gpu-wheels` puts the missing packages as
# wheels into wheels/ (ignored by git); carry wheels/ with the checkout.
# On the GPU machine, from the checkout's root:
#     bash benchmarks/gpu_check.sh [OUT]        (OUT: where the results go; gpu_check_out/)
#
# Steps, each with a time limit so that one slow step cannot eat the others' time:
#   1. install what python3 lacks from wheels/ (no index) into OUT/site, on PYTHONPATH;
#   2. the GPU, torch and CUDA versions (nvidia-smi, torch), and the float64 probe;
#   3. the tests that need CUDA (capture against eager, resume across devices, same points,
#      the float64 probe) and the host-read tests;
#   4. the default run with device=cuda (wall time, error, steps/s);
#   5. pinn.bench on the GPU: Burgers float32 at N = 10k, 100k, 1M and the seed network in
#      float64 at N = 1k; engines plain, taylor, taylor+compile and their captured forms;
#   6. experiment=precise (Burgers) with device=cuda for 3 minutes;
#   7. OUT/summary.md: every figure above in one page.
set -u
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
LOG="$OUT/gpu_check.log"
: > "$LOG"
START=$(date +%s)
say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
step() {  # step NAME SECONDS command...: run with a limit, output into OUT/NAME.txt
  local name=$1 limit=$2; shift 2
  say "$name: $* (limit ${limit}s)"
  timeout --signal=TERM --kill-after=20 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  say "$name: exit $rc"
  echo "$rc" > "$OUT/$name.rc"
}

# 1. the missing packages
export PYTHONPATH="$OUT/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
missing=()
for pair in hydra:hydra-core omegaconf:omegaconf antlr4:antlr4-python3-runtime yaml:PyYAML \
            optuna:optuna colorlog:colorlog alembic:alembic sqlalchemy:SQLAlchemy mako:Mako \
            markupsafe:MarkupSafe packaging:packaging typing_extensions:typing_extensions; do
  module=${pair%%:*}; package=${pair#*:}
  $PY -c "import $module" 2>/dev/null || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing from wheels/: ${missing[*]}"
  $PY -m pip install -q --no-index --find-links "$ROOT/wheels" --no-deps --target "$OUT/site" \
    "${missing[@]}" >> "$LOG" 2>&1 || say "pip install failed (see $LOG); wheels/ made by make gpu-wheels?"
fi
$PY -c "import hydra, omegaconf, pinn.train" >> "$LOG" 2>&1 || { say "pinn does not import: stop"; exit 1; }

# 2. the machine
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  $PY -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', platform.python_version()); print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE')"
  $PY -c "import torch; from pinn.precision import measure; r = measure(torch.device('cuda')); print('GFLOP/s float32 %.0f float64 %.0f ratio %.1f' % (r['float32'], r['float64'], r['float32'] / r['float64']))"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" | tee -a "$LOG"

# 3. tests (CUDA ones run here; they skip on the CPU)
step tests 75 $PY -m pytest -q -p no:cacheprovider -p no:xdist -o addopts="" -m "not slow" -ra \
  tests/test_capture.py tests/test_device.py tests/test_precision.py tests/test_host_reads.py

# 4. the default run on the GPU (a GPU run resumed on the CPU: tests/test_device.py, step 3)
step default_run 100 $PY -m pinn.train device=cuda trainer.progress=false \
  hydra.run.dir="$OUT/default_run"

# 5. the step's speed
ENGINES=plain,taylor,taylor+compile,plain+graph,taylor+graph,taylor+compile+graph
LARGE=plain,taylor+compile,plain+graph,taylor+compile+graph
step bench_10k 45 $PY -m pinn.bench --device cuda --cases b,a --reps 20 --engines "$ENGINES" \
  --json "$OUT/bench_10k.json"
step bench_100k 35 $PY -m pinn.bench --device cuda --cases b --points 100000 --reps 10 \
  --engines "$LARGE" --json "$OUT/bench_100k.json"
step bench_1m 35 $PY -m pinn.bench --device cuda --cases b --points 1000000 --reps 5 \
  --engines "$LARGE" --json "$OUT/bench_1m.json"

# 6. the precise recipe for 3 minutes
step precise 195 $PY -m pinn.train experiment=precise device=cuda trainer.max_minutes=3 \
  trainer.progress=false hydra.run.dir="$OUT/precise"

# 7. the summary
$PY benchmarks/gpu_summary.py "$OUT" > "$OUT/summary.md" 2>> "$LOG"
say "done: $OUT/summary.md"
cat "$OUT/summary.md"
