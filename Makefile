# The README's two commands are `make demo` and `make test`; both set up .venv first when needed.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.sparkdl-setup

.PHONY: setup demo test bench bench-quick clean

setup: $(STAMP)

# Stale when the project's requirements or the set-up scripts change.
$(STAMP): pyproject.toml scripts/setup.sh scripts/cxx17
	bash scripts/setup.sh
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) pipelines/digits_mlp.py --conf conf/digits_mlp.yaml

test: $(STAMP)
	$(PYTHON) -m pytest

# Benchmarks print one table and write benchmarks/results/*.json (README, "Performance").
bench: $(STAMP)
	$(PYTHON) benchmarks/run_all.py

bench-quick: $(STAMP)
	$(PYTHON) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache spark-warehouse metastore_db derby.log output
