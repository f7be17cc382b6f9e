# Developer entry points.  `make test` is what CI runs.
.PHONY: test build

test:
	./scripts/test_all.sh

# In-place build of the engine for the python3 on PATH (or PYTHON=...).
PYTHON ?= python3
build:
	LOWIMPACT_STRICT=1 $(PYTHON) setup.py build_ext --inplace
