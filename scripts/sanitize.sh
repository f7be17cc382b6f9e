#!/usr/bin/env bash
# Runs tests against the engine built with AddressSanitizer, or under
# valgrind, on CPython 3.11 (the version the C engine serves).
#
#   scripts/sanitize.sh asan [pytest args...]       default: the whole suite
#   scripts/sanitize.sh valgrind [pytest args...]   default: the conformance suite
#
# Python allocates through malloc (PYTHONMALLOC=malloc) so that the tools see
# every object.  Leaks at exit are not reported: the interpreter does not
# free everything at exit.  Exit status 1 if the tests fail or a tool reports
# an error.
set -u
tool=${1:?usage: scripts/sanitize.sh asan|valgrind [pytest args...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
python=${LOWIMPACT_PYTHON311:-$(ls -d "$root"/versions/3.11.* 2>/dev/null | sort -V -r | head -n 1)/bin/python3.11}
if [ ! -x "$python" ]; then
    echo "CPython 3.11 not found (set LOWIMPACT_PYTHON311): nothing to check"
    exit 0
fi
# Test paths are taken from the repository root; anything else (an option,
# an option's value such as -n's 2 or -k's expression) is passed on as is.
args=()
for arg in "$@"; do
    case "$arg" in
    -*|/*) args+=("$arg") ;;
    *) if [ -e "$here/${arg%%::*}" ]; then args+=("$here/$arg"); else args+=("$arg"); fi ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"
work=$(mktemp -d "${TMPDIR:-/tmp}/lowimpact-$tool.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
export PYTHONMALLOC=malloc
# Built from a copy of the sources: pip builds in the tree it is given, and
# the instrumented objects it would leave in build/ get linked into the
# in-place modules by the next `make build`.
mkdir "$work/src"
tar -C "$here" --exclude=./.git --exclude=./build --exclude='*.so' -cf - . | tar -C "$work/src" -xf -
case "$tool" in
asan)
    LOWIMPACT_ASAN=1 LOWIMPACT_DEBUG=1 "$work/venv/bin/python" -m pip install --quiet \
        --disable-pip-version-check "$work/src[test]" 2>&1 | grep -v "^WARNING: Location"
    [ $# -gt 0 ] || set -- "$here/tests"
    libasan=$(gcc -print-file-name=libasan.so)
    (cd "$work" && LD_PRELOAD="$libasan" \
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
        "$work/venv/bin/python" -m pytest -p no:cacheprovider -q "$@")
    ;;
valgrind)
    LOWIMPACT_DEBUG=1 "$work/venv/bin/python" -m pip install --quiet \
        --disable-pip-version-check "$work/src[test]" 2>&1 | grep -v "^WARNING: Location"
    [ $# -gt 0 ] || set -- "$here/tests/conformance"
    (cd "$work" && valgrind --quiet --error-exitcode=99 ${LOWIMPACT_VALGRIND_OPTIONS:-} --leak-check=no \
        --suppressions="$here/scripts/valgrind-python.supp" \
        "$work/venv/bin/python" -m pytest -p no:cacheprovider -q "$@")
    ;;
*)
    echo "unknown tool: $tool (asan or valgrind)"
    exit 2
    ;;
esac
