# The README's two commands are `make demo` and `make test`; both set up the venv first when needed.
# SPARK=4 (default) uses .venv with pyspark 4.x; `make test SPARK=3.5` uses .venv-spark3.5 with pyspark 3.5.
SPARK  ?= 4
VENV   := $(if $(filter 4,$(SPARK)),.venv,.venv-spark$(SPARK))
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.sparkneural-setup
# e.g. make test PYTEST_ARGS="-m stacks" (the subset CI runs on the second Spark line)
PYTEST_ARGS ?=

.PHONY: setup demo test docs bench bench-quick clean

setup: $(STAMP)

# Stale when the project's requirements or the set-up scripts change.
$(STAMP): pyproject.toml requirements/spark-$(SPARK).txt scripts/setup.sh sparkneural/cxx17 sparkneural/horovod_build.py
	SPARK=$(SPARK) VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

demo: $(STAMP)
	$(PYTHON) pipelines/digits_mlp.py --conf conf/digits_mlp.yaml

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The documentation site, into site/ (every warning an error; mkdocs serve previews it).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -d site

# Benchmarks print one table and write benchmarks/results/*.json (the site's performance page).
bench: $(STAMP)
	$(PYTHON) benchmarks/run_all.py

bench-quick: $(STAMP)
	$(PYTHON) benchmarks/run_all.py --quick

clean:
	rm -rf .venv .venv-spark3.5 build dist *.egg-info .pytest_cache spark-warehouse metastore_db derby.log output site
