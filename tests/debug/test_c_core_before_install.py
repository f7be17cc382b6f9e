"""lowimpact._debug's functions called before install() (which gives the
core its canonic() and arm() callables) raise an exception; none crashes
the interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import env_for

CALLS = [
    "_debug.learn(compile('1', 'x.py', 'eval'))",
    "_debug.set_breaks({'x.py': ([1], [])}); _debug.codes('x.py'); _debug.files()",
]


@pytest.mark.parametrize("call", CALLS)
def test_no_crash_before_install(tmp_path, call):
    program = "from lowimpact import _debug\ntry:\n    %s\nexcept Exception as e:\n    print(type(e).__name__)\nprint('alive')\n" % call
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, env=env_for(tmp_path))
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.endswith("alive\n")
