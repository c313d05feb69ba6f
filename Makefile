# Two commands: `make train` (default config; creates .venv when missing) and `make test`.
# Extra arguments: make train ARGS="pde=heat model.width=32"; make test PYTEST_ARGS="-k cli".
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test setup docs bench clean gpu-wheels

train: $(STAMP)
	$(BIN)/python -m pinn.train $(ARGS)

# Two pytest workers (pytest-xdist; one torch thread each); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

setup: $(STAMP)

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or anchor, or a
# page missing from the nav, fails. Preview: $(BIN)/mkdocs serve
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# torch is installed first from the pinned CPU build (constraints.txt); a bare `torch`
# requirement would pull a multi-GB CUDA build. `pip install -e` then keeps it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The pure-Python packages a GPU machine with torch but nothing else lacks, as wheels in wheels/
# (ignored by git; carry it to the machine with the checkout): benchmarks/gpu_check.sh installs
# the missing ones from there without an index. Versions: those of this .venv. PyYAML has
# PyYAML and MarkupSafe have compiled wheels: one per CPython 3.10-3.13 on x86_64 Linux;
# SQLAlchemy (for Optuna's storage) 3.11-3.13.
GPU_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 optuna==5.1.0 colorlog==6.12.0 \
	alembic==1.20.1 Mako==1.4.3 packaging==26.4 typing_extensions==4.16.0
gpu-wheels: $(STAMP)
	rm -rf wheels && mkdir -p wheels
	$(BIN)/python -m pip download -q --no-deps -d wheels $(GPU_WHEELS)
	$(BIN)/python -m pip wheel -q --no-deps -w wheels antlr4-python3-runtime==4.9.3
	for v in 3.10 3.11 3.12 3.13; do \
	  $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $$v \
	    --platform manylinux2014_x86_64 -d wheels PyYAML==6.0.4 MarkupSafe==3.0.4 || exit 1; \
	done
	for v in 3.11 3.12 3.13; do \
	  $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $$v \
	    --platform manylinux2014_x86_64 -d wheels SQLAlchemy==2.1.9 || exit 1; \
	done

clean:
	rm -rf $(VENV) outputs build dist site *.egg-info
