"""Whether two checkouts' `cover run --branch` wrote the same data.

    python bench/cover_save_compare.py DIR_A ROOT_A DIR_B ROOT_B

DIR_A and DIR_B hold the data files and sub-line files that
bench/cover_save_callgrind.py --keep wrote from the checkouts at ROOT_A and
ROOT_B (whose bench/cover_programs paths are in them).  For each data file
of DIR_A: its measured files, their lines and arcs in each context (through
coverage.py's CoverageData), and its sub-line file's text, with ROOT_A read
as ROOT_B, must be those of DIR_B.  Prints what differs; exits 1 if anything
does.
"""

from __future__ import annotations

import sys
from pathlib import Path


def contents(data_file: Path, root: str, other_root: str) -> dict:
    from coverage import CoverageData

    data = CoverageData(str(data_file))
    data.read()
    found = {}
    for context in sorted(data.measured_contexts()):
        data.set_query_contexts([context] if context else None)
        for path in sorted(data.measured_files()):
            name = path.replace(root, other_root)
            found[(context, name)] = (sorted(data.lines(path) or ()),
                                      sorted(data.arcs(path) or ()))
    return found


def main() -> int:
    dir_a, root_a, dir_b, root_b = sys.argv[1:5]
    differ = 0
    for data_a in sorted(Path(dir_a).iterdir()):
        if data_a.name.endswith(".json"):
            continue
        data_b = Path(dir_b) / data_a.name
        found = contents(data_a, root_a, root_b)
        problems = []
        if found != contents(data_b, root_b, root_b):
            problems.append("lines or arcs differ")
        subline_a = Path(dir_a) / (data_a.name + "-subline.json")
        subline_b = Path(dir_b) / (data_a.name + "-subline.json")
        if subline_a.read_text().replace(root_a, root_b) != subline_b.read_text():
            problems.append("sub-line files differ")
        arcs = sum(len(file_arcs) for _, file_arcs in found.values())
        print("%s (%d files, %d arcs): %s" % (data_a.name, len(found), arcs,
                                                 ", ".join(problems) or "the same"))
        differ |= bool(problems)
    return differ


if __name__ == "__main__":
    sys.exit(main())
