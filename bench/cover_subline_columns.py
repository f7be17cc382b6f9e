"""How close 3.10's (and 3.9's) recovered sub-line columns are to
3.11-3.13's, and what recovering them costs.

Not a benchmark of monitoring: the branch points of every code object of a
directory's sources, as ``cover subline`` records them (line, columns), on
each interpreter, compared; and on 3.10 (or 3.9) the time the recovery
takes next to compiling the same sources.

    python3.10 bench/cover_subline_columns.py dump DIR 310.json   # likewise 3.9, 3.11-3.13
    python3 bench/cover_subline_columns.py compare 310.json 311.json 312.json 313.json
    python3.10 bench/cover_subline_columns.py cost DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def sources(directory: str) -> dict:
    """The sources under *directory* that this interpreter compiles
    (test data and third-party packages left out)."""
    found = {}
    for where, _, names in os.walk(directory):
        if "site-packages" in where or os.sep + "test" in where:
            continue
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(where, name)
                source = Path(path).read_bytes()
                try:
                    compile(source, path, "exec", dont_inherit=True)
                except (SyntaxError, ValueError):
                    continue
                found[path] = source
    return found


def codes(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from codes(const)


def dump(directory: str, output: str) -> None:
    from lowimpact.tools.cover.arcs import CodeMap

    points = {}
    for path, source in sources(directory).items():
        top = compile(source, path, "exec", dont_inherit=True)
        points[path] = sorted({(p.line, p.col, p.end_col) for code in codes(top)
                               for p in CodeMap(code).branch_points()}, key=repr)
    Path(output).write_text(json.dumps(points))


def compare(first: str, *others: str) -> None:
    def load(name: str) -> dict:
        return {path: {tuple(p) for p in found}
                for path, found in json.loads(Path(name).read_text()).items()}

    mine, theirs = load(first), [load(name) for name in others]
    total = same_first = same_any = unplaced = 0
    for path, found in mine.items():
        if not all(path in other for other in theirs):
            continue
        total += len(found)
        same_first += len(found & theirs[0][path])
        same_any += len(found & set().union(*(other[path] for other in theirs)))
        unplaced += sum(1 for p in found - theirs[0][path] if p[1] is None)
    print("%d points in %s: %.1f%% as in %s, %.1f%% as in one of %s, %.1f%% without "
          "columns where %s has them" % (total, first, 100 * same_first / total, others[0],
                                         100 * same_any / total, ", ".join(others),
                                         100 * unplaced / total, others[0]))


def cost(directory: str) -> None:
    from lowimpact.tools.cover import columns310

    found = sources(directory)
    start = time.perf_counter()
    for path, source in found.items():
        compile(source, path, "exec", dont_inherit=True)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    for path, source in found.items():
        columns310._Source(source, path, False)
    recovered = time.perf_counter() - start
    print("%d files: compiling %.2f s, the renumbered compile of columns310 %.2f s (%.1fx)"
          % (len(found), compiled, recovered, recovered / compiled))


if __name__ == "__main__":
    warnings.simplefilter("ignore")   # SyntaxWarnings of the sources
    {"dump": dump, "compare": compare, "cost": cost}[sys.argv[1]](*sys.argv[2:])
