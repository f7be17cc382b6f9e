"""Before 3.10 there is no lowimpact.monitoring: ``debug`` says what it needs."""

import subprocess
import sys

import pytest

from .helpers import PROGRAMS, env_for


@pytest.mark.skipif(sys.version_info >= (3, 10), reason="debug runs on 3.10+")
def test_debug_says_it_needs_310(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lowimpact", "debug", str(PROGRAMS / "basic.py")],
        input="c\n", capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env=env_for(tmp_path),
    )
    assert proc.returncode == 1
    assert "needs sys.monitoring" in proc.stderr
    assert "CPython 3.10, 3.11, 3.12 and 3.13" in proc.stderr
    assert "result" not in proc.stdout
