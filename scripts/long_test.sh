#!/usr/bin/env bash
# The long runs, on CPython 3.11 (the engine) and, for comparison where it
# applies, the native 3.12: memory soak, shadows of the whole stdlib and the
# stdlib's regression tests with monitoring on (on 3.10 and 3.9 too), a
# longer fuzz run.  Uses a fresh virtual environment per interpreter, like
# scripts/test_all.sh.
#
#   scripts/long_test.sh            everything (about an hour)
#   scripts/long_test.sh --short    small counts (CI)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
short=0
[ "${1:-}" = "--short" ] && short=1
work=$(mktemp -d "${TMPDIR:-/tmp}/lowimpact-long.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0

venv_for() {
    local minor=$1 python
    python=$(ls -d "$root"/versions/3."$minor".* 2>/dev/null | sort -V -r | head -n 1)/bin/python3.$minor
    [ -x "$python" ] || return 1
    "$python" -m venv "$work/venv3$minor" &&
    "$work/venv3$minor/bin/python" -m pip install --quiet --disable-pip-version-check \
        "$here[test]" 2>&1 | grep -v "^WARNING: Location"
    echo "$work/venv3$minor/bin/python"
}

run() {
    echo "--- $*"
    "$@" || status=1
}

if py311=$(venv_for 11 | tail -n 1) && [ -x "$py311" ]; then
    lib=$("$py311" -c "import os, sysconfig; print(sysconfig.get_paths()['stdlib'])")
    if [ $short -eq 1 ]; then
        run "$py311" "$here/tools/soak.py" --cycles 3000 --seconds 10
        run "$py311" "$here/tools/transparency.py" --quick
        (cd "$here" && LOWIMPACT_FUZZ_EXAMPLES=100 run "$py311" -m pytest -p no:cacheprovider -q \
            tests/conformance/test_fuzz.py)
    else
        run "$py311" "$here/tools/soak.py" --cycles 100000 --seconds 60
        run "$py311" "$here/tests/engine/shadowcheck.py" "$lib"
        run "$py311" "$here/tools/transparency.py"
        (cd "$here" && LOWIMPACT_SOAK=1 LOWIMPACT_FUZZ_EXAMPLES=1000 run "$py311" -m pytest \
            -p no:cacheprovider -q tests/engine/test_memory.py tests/conformance/test_fuzz.py)
    fi
else
    echo "--- CPython 3.11 not installed: engine runs skipped"
fi
# The block-stack back end on 3.10 and 3.9: shadows of the whole stdlib,
# the stdlib's regression tests with monitoring on.
for minor in 10 9; do
    if py=$(venv_for $minor | tail -n 1) && [ -x "$py" ]; then
        if [ $short -eq 1 ]; then
            run "$py" "$here/tools/transparency.py" --quick
        else
            run "$py" "$here/tests/engine/shadowcheck310.py" \
                "$("$py" -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")"
            run "$py" "$here/tools/transparency.py"
        fi
    else
        echo "--- CPython 3.$minor not installed: its transparency run skipped"
    fi
done
if [ $short -eq 0 ] && py312=$(venv_for 12 | tail -n 1) && [ -x "$py312" ]; then
    run "$py312" "$here/tools/soak.py" --cycles 100000 --seconds 60
    run "$py312" "$here/tools/transparency.py"
fi
exit $status
