#!/bin/sh
# Run the benchmarks under every interpreter and print a combined comparison.
#
#   bench/run_all.sh [--quick] [--runs N] [--python PY ...] [other run.py options]
#
# Interpreters: --python PY (repeatable), else $LOWIMPACT_BENCH_PYTHONS
# (space-separated), else python3.9, 3.10, 3.11, 3.12 and 3.13 from pyenv or PATH.  The driver itself
# only starts processes, so any Python 3 will do to run it.
here=$(dirname "$0")
driver=${LOWIMPACT_BENCH_DRIVER:-python3}
exec "$driver" "$here/run.py" --all "$@"
