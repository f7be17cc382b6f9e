#!/usr/bin/env bash
# Runs the test suite on every CPython 3.9-3.13 installed under pyenv (or
# listed in $LOWIMPACT_PYTHONS), each in a fresh virtual environment with the
# package and its test dependencies installed from the package index.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
work=$(mktemp -d "${TMPDIR:-/tmp}/lowimpact-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0
summary=()

find_python() {
    local minor=$1 candidate
    if [ -n "${LOWIMPACT_PYTHONS:-}" ]; then
        for candidate in $LOWIMPACT_PYTHONS; do
            if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != (3, $minor))" 2>/dev/null; then
                echo "$candidate"; return
            fi
        done
        return
    fi
    for candidate in $(ls -d "$root"/versions/3."$minor".* 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/bin/python3.$minor" ]; then
            echo "$candidate/bin/python3.$minor"; return
        fi
    done
}

for minor in 9 10 11 12 13; do
    python=$(find_python "$minor")
    if [ -z "$python" ]; then
        echo "=== CPython 3.$minor: not installed, skipped"
        summary+=("3.$minor: skipped (not installed)")
        continue
    fi
    echo "=== CPython 3.$minor: $python"
    venv="$work/venv3$minor"
    if ! "$python" -m venv "$venv" || \
       ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "$here[test]" 2>&1 | grep -v "^WARNING: Location"; then
        :
    fi
    if ! "$venv/bin/python" -c "import lowimpact" 2>/dev/null; then
        echo "installing lowimpact failed on 3.$minor"
        summary+=("3.$minor: install failed")
        status=1
        continue
    fi
    log="$work/pytest3$minor.log"
    (cd "$here" && "$venv/bin/python" -m pytest -p no:cacheprovider -q "$here/tests" "$@") \
        2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E "^(=+ )?[0-9]+ (passed|failed|error)|no tests ran" "$log" | tail -n 1)
    summary+=("3.$minor: ${line:-no summary} (exit $rc)")
    [ "$rc" -eq 0 ] || status=1
done

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status
