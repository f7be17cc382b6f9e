"""Before 3.9 there is no lowimpact.monitoring: ``debug`` says what it needs."""

import subprocess

from .helpers import PROGRAMS, env_for


def test_debug_says_it_needs_39(tmp_path, python38):
    proc = subprocess.run(
        [python38, "-m", "lowimpact", "debug", str(PROGRAMS / "basic.py")],
        input="c\n", capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env=env_for(tmp_path),
    )
    assert proc.returncode == 1
    assert "needs sys.monitoring" in proc.stderr
    assert "CPython 3.9, 3.10, 3.11, 3.12 and 3.13; this is cpython 3.8" in proc.stderr
    assert "result" not in proc.stdout
