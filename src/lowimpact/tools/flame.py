"""Flame graphs and collapsed stacks, shared by ``sample`` and ``profile``.

Both take ``{(frame label, ... outermost first): weight}``: sample counts
for the sampler, microseconds of own time for the profiler.
"""

from __future__ import annotations

import html
import zlib
from typing import Dict, TextIO, Tuple

__all__ = ["write_collapsed", "write_svg"]

Stacks = Dict[Tuple[str, ...], int]


def write_collapsed(stacks: Stacks, stream: TextIO) -> None:
    """Brendan Gregg's collapsed stacks (flamegraph.pl's input):
    ``frame;frame;frame weight``, one stack a line."""
    for stack, n in sorted(stacks.items()):
        if stack:
            stream.write("%s %d\n" % (";".join(stack), n))


class _Node:
    __slots__ = ("name", "value", "children")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self.children: Dict[str, "_Node"] = {}


def write_svg(stacks: Stacks, stream: TextIO, *, title: str, unit: str,
              width: int = 1200) -> None:
    """A flame graph: callers below, callees above, widths by weight; each
    box's tooltip names the frame, its weight in *unit* and its share."""
    root = _Node("all")
    depth = 0
    for stack, n in stacks.items():
        root.value += n
        node = root
        for label in stack:
            node = node.children.setdefault(label, _Node(label))
            node.value += n
        depth = max(depth, len(stack))
    row, pad = 16, 30
    height = (depth + 1) * row + 2 * pad
    total = max(root.value, 1)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'font-family="monospace" font-size="11">\n' % (width, height),
        '<rect width="100%" height="100%" fill="#f8f8f0"/>\n',
        '<text x="%d" y="20" font-size="14" text-anchor="middle">%s, %d %s</text>\n'
        % (width // 2, html.escape(title), root.value, unit),
    ]
    scale = (width - 20) / total

    def draw(node: _Node, x: float, level: int) -> None:
        w = node.value * scale
        if w < 0.5:
            return
        y = height - pad - (level + 1) * row
        hue = zlib.crc32(node.name.encode()) % 60
        label = html.escape(node.name)
        share = 100.0 * node.value / total
        out.append('<g><title>%s (%d %s, %.2f%%)</title>'
                   '<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="2" '
                   'fill="hsl(%d,85%%,60%%)" stroke="#f8f8f0"/>'
                   % (label, node.value, unit, share, x, y, w, row - 1, hue))
        chars = int(w / 7) - 1
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[:chars - 2] + ".."
            out.append('<text x="%.1f" y="%d">%s</text>' % (x + 3, y + row - 4,
                                                            html.escape(text)))
        out.append("</g>\n")
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, x, level + 1)
            x += child.value * scale

    draw(root, 10.0, 0)
    out.append("</svg>\n")
    stream.write("".join(out))
