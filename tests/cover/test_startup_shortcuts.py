"""The shortcuts ``cover run`` takes through coverage.py's start-up give
coverage.py's answers, and the program sees none of them."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from lowimpact.tools.cover.measure import (
    _directories_resolved_once,
    _sysconfig_paths_asked_once,
    expanded_paths,
)

from .helpers import python


@pytest.mark.parametrize("scheme", sysconfig.get_scheme_names())
def test_expanded_paths_are_sysconfigs(scheme: str) -> None:
    assert expanded_paths(scheme) == sysconfig.get_paths(scheme)


def test_paths_asked_once_are_sysconfigs_and_copies() -> None:
    real = sysconfig.get_paths
    with _sysconfig_paths_asked_once():
        assert sysconfig.get_paths is not real
        first = sysconfig.get_paths("posix_prefix")
        first["stdlib"] = "changed by a caller"
        assert sysconfig.get_paths("posix_prefix") == real("posix_prefix")
        assert sysconfig.get_paths("posix_user", expand=False) == real("posix_user", expand=False)
    assert sysconfig.get_paths is real


def _tree(tmp_path: Path) -> list:
    """Paths whose real path goes through symbolic links in every place
    one can be: a directory, the file itself, both, a chain, a dangling one,
    a missing file."""
    real_dir = tmp_path / "real"
    (real_dir / "sub").mkdir(parents=True)
    (real_dir / "sub" / "mod.py").write_text("")
    (real_dir / "other.py").write_text("")
    (tmp_path / "linked_dir").symlink_to(real_dir)
    (real_dir / "linked_file.py").symlink_to(real_dir / "other.py")
    (real_dir / "sub" / "up.py").symlink_to(Path("..") / "other.py")
    (real_dir / "chain.py").symlink_to(real_dir / "linked_file.py")
    (real_dir / "dangling.py").symlink_to(real_dir / "nowhere.py")
    names = ["sub/mod.py", "other.py", "linked_file.py", "sub/up.py", "chain.py",
             "dangling.py", "missing.py", "sub/../other.py", "sub/."]
    return [str(base / name) for base in (real_dir, tmp_path / "linked_dir") for name in names]


def test_directories_resolved_once_give_realpath(tmp_path: Path) -> None:
    from coverage.misc import isolate_module

    coverage_path = isolate_module(os).path
    paths = _tree(tmp_path)
    with _directories_resolved_once():
        assert coverage_path.realpath is not os.path.realpath
        # Twice: the second time from the directories already resolved.
        for _ in range(2):
            resolved = [coverage_path.realpath(p) for p in paths]
            assert resolved == [os.path.realpath(p) for p in paths]
        assert coverage_path.realpath("relative.py") == os.path.realpath("relative.py")
    assert coverage_path.realpath is os.path.realpath


def test_program_sees_sys_path_and_sysconfig_as_without_it(tmp_path: Path) -> None:
    """The program's ``sys.path`` (set before coverage.py's start-up, as
    under coverage run) and ``sysconfig.get_paths`` are a plain run's."""
    (tmp_path / "program.py").write_text(
        "import sys, sysconfig\n"
        "print(sys.path[0])\n"
        "print(sysconfig.get_paths.__module__, sysconfig.get_paths.__qualname__)\n"
        "print(sorted(sysconfig.get_paths().items()))\n")
    plain = python(["program.py"], tmp_path)
    measured = python(["-m", "lowimpact", "cover", "run", "--source", ".", "program.py"], tmp_path)
    assert measured.stdout == plain.stdout
    assert plain.stdout.startswith(str(tmp_path.resolve()) + "\n")
