"""Before 3.9 there is no lowimpact.monitoring: ``cover`` says what it needs."""

import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(sys.version_info >= (3, 9), reason="cover runs on 3.9+")
def test_cover_says_it_needs_39(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    import lowimpact

    root = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "lowimpact", "cover", "run", str(script)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env,
    )
    assert proc.returncode == 1
    assert "needs CPython 3.9 or newer" in proc.stderr
    assert "hello" not in proc.stdout
    assert not list(tmp_path.glob(".coverage*"))
