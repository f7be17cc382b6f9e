# Developer entry points.  `make test` is what CI runs.
.PHONY: test build

test:
	./scripts/test_all.sh

# In-place build of the engine for the python3 on PATH (or PYTHON=...).
PYTHON ?= python3
build:
	LOWIMPACT_STRICT=1 $(PYTHON) setup.py build_ext --inplace

# The test suite against the engine built with AddressSanitizer (3.11), and
# the conformance suite under valgrind; `make sanitize-short` is CI's form.
.PHONY: asan valgrind sanitize-short long-test
asan:
	./scripts/sanitize.sh asan

valgrind:
	./scripts/sanitize.sh valgrind

sanitize-short:
	./scripts/sanitize.sh asan tests/conformance tests/engine/test_memory.py

# The long runs: 100,000 enable/disable cycles and a minute of workload with
# every event on, every stdlib module's shadows checked, the stdlib
# regression tests with monitoring on (tools/transparency.py), a longer fuzz.
long-test:
	./scripts/long_test.sh
