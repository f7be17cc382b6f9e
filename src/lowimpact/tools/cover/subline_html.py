"""The sub-line report as an HTML page: ``cover subline --html DIR``.

One self-contained page (``DIR/index.html``, no script, no external file):
per file, each reported line with its source, every branch point marked
where it sits in the line (green: every direction ran, yellow: some, red:
none; the directions in its tooltip) and listed under the line with the
directions that ran and those that did not.
"""

from __future__ import annotations

import html
import linecache
import os
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["write_html"]

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; }
td { vertical-align: top; padding: 0.15em 0.6em; }
td.lineno { text-align: right; color: #888; font-family: monospace; }
pre { margin: 0; }
.point { border-radius: 2px; }
.full { background: #b8ecb8; } .partial { background: #ffe08a; } .none { background: #f8b0b0; }
ul.directions { margin: 0.2em 0 0.6em 0; padding-left: 1.2em; font-size: 0.9em; }
.ran { color: #1a7a1a; } .missed { color: #b01010; font-weight: bold; }
.legend span { margin-right: 1em; }
"""


def _state(directions: Dict[str, bool]) -> str:
    ran = sum(directions.values())
    return "full" if ran == len(directions) else "none" if ran == 0 else "partial"


def _char_index(text: str, byte_offset: Optional[int]) -> Optional[int]:
    """A UTF-8 byte offset into *text* (``co_positions()``) as a str index."""
    if byte_offset is None:
        return None
    return len(text.encode("utf-8")[:byte_offset].decode("utf-8", "replace"))


def _spans(text: str, points: List[Dict[str, Any]]) -> List[Tuple[int, int, int]]:
    """(start, end, point number) of the points to mark in *text*, in order,
    leaving out points without columns and those overlapping an earlier
    one (a condition inside a condition): they are listed, not marked."""
    spans: List[Tuple[int, int, int]] = []
    for number, point in enumerate(points):
        start = _char_index(text, point["col"])
        end = len(text) if point["end_col"] is None else _char_index(text, point["end_col"])
        if start is None or end is None or end <= start:
            continue
        if any(start < other_end and other_start < end for other_start, other_end, _ in spans):
            continue
        spans.append((start, end, number))
    return sorted(spans)


def _describe(directions: Dict[str, bool]) -> str:
    return ", ".join("%s: %s" % (meaning, "ran" if ran else "MISSED")
                     for meaning, ran in directions.items())


def _line_html(filename: str, line: str, points: List[Dict[str, Any]]) -> str:
    text = linecache.getline(filename, int(line)).rstrip("\n")
    out: List[str] = []
    position = 0
    for start, end, number in _spans(text, points):
        point = points[number]
        out.append(html.escape(text[position:start]))
        out.append('<span class="point %s" data-point="%d" title="%s">%s</span>'
                   % (_state(point["directions"]), number,
                      html.escape("%s: %s" % (point["text"], _describe(point["directions"]))),
                      html.escape(text[start:end])))
        position = end
    out.append(html.escape(text[position:]))
    items = []
    for point in points:
        ways = " ".join('<span class="%s">%s</span>' % ("ran" if ran else "missed",
                                                        html.escape(meaning))
                        for meaning, ran in point["directions"].items())
        where = "" if point["col"] is None else " (col %d)" % (point["col"] + 1)
        items.append('<li class="%s"><code>%s</code>%s: %s</li>'
                     % (_state(point["directions"]), html.escape(point["text"]), where, ways))
    return ('<tr class="line" id="L%s"><td class="lineno">%s</td><td><pre>%s</pre>'
            '<ul class="directions">%s</ul></td></tr>'
            % (line, line, "".join(out), "".join(items)))


def write_html(report: Dict[str, Any], directory: str) -> str:
    """Write the report of :func:`~lowimpact.tools.cover.subline.analyse`
    as ``index.html`` in *directory* (made if needed); return its path."""
    totals = report["totals"]
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8">',
        "<title>Sub-line branches</title><style>%s</style></head><body>" % _STYLE,
        "<h1>Sub-line branches</h1>",
        '<p class="totals">%d lines with sub-line branches: %d of %d directions ran (%.1f%%)</p>'
        % (totals["lines_with_subline_branches"], totals["directions_run"],
           totals["directions"], totals["percent_directions_run"]),
        '<p class="legend"><span class="point full">every direction ran</span>'
        '<span class="point partial">some did</span><span class="point none">none did</span></p>',
    ]
    for filename, entry in report["files"].items():
        parts.append('<section class="file"><h2>%s</h2><table>'
                     % html.escape(os.path.relpath(filename)))
        for line, detail in entry["lines"].items():
            parts.append(_line_html(filename, line, detail["branch_points"]))
        parts.append("</table></section>")
    parts.append("</body></html>\n")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "index.html")
    temporary = path + ".tmp%d" % os.getpid()
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write("".join(parts))
    os.replace(temporary, path)
    return path
