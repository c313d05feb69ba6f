# Two commands: `make train` (default config; creates .venv when missing) and `make test`.
# Extra arguments: make train ARGS="pde=heat model.width=32"; make test PYTEST_ARGS="-k cli".
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test setup docs bench clean

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

clean:
	rm -rf $(VENV) outputs build dist site *.egg-info
