# Every target installs what it needs into .venv on a fresh machine, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The small CPU build; GPU users override, e.g. `make install TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test test-full bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,sweep,nwb]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m experiments.train experiment=jedi/multifreq_demo

test: install
	$(PY) -m pytest -m "not slow" -q

test-full: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m experiments.bench

lint: install
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check jedi posedistill experiments tests

clean:
	rm -rf $(VENV) logs outputs multirun
