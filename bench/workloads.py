"""Workloads that the benchmarks time with and without monitoring.

Each workload is split in two: ``prepare(size)`` builds the input (not timed)
and ``run(state)`` does the work (timed) and returns a checksum that must not
depend on whether monitoring is on, so the harness can check that monitoring
did not change what the program computed.

``size`` means something different per workload (repetitions, lines, records,
words); the defaults are chosen so that ``run`` takes roughly 0.3-0.4 s
unmonitored on the project's 2-core machine, and the quick sizes about
0.03 s.

Each workload also names its *hot function*: the code object where the
breakpoint scenarios place their never-hit breakpoint.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import json.encoder
import random
try:
    import tomllib
except ImportError:     # 3.10 and older: the toml workload is left out
    tomllib = None  # type: ignore[assignment]
import types
import zlib
from dataclasses import dataclass
from typing import Any, Callable

# ---------------------------------------------------------------------------
# calls: recursion and small method calls, the worst case for per-call hooks


def fib(n: int) -> int:
    """Naive recursive Fibonacci: one Python call per node of the call tree."""
    if n < 0:
        # Never true: the breakpoint scenarios put their breakpoint here.
        raise ValueError("negative")
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


class Vec:
    """A 2-D vector whose operations are tiny methods, as in typical OO code."""

    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def add(self, other: "Vec") -> "Vec":
        return Vec(self.x + other.x, self.y + other.y)

    def dot(self, other: "Vec") -> int:
        return self.x * other.x + self.y * other.y

    @property
    def norm2(self) -> int:
        return self.dot(self)


def vec_walk(steps: int) -> int:
    """Accumulate vectors through small method and property calls."""
    acc = Vec(0, 0)
    total = 0
    for i in range(steps):
        acc = acc.add(Vec(i & 7, -(i & 3)))
        total += acc.norm2 % 11
    return total


def calls_prepare(size: int) -> int:
    """Nothing to build: the state is the number of repetitions."""
    return size


def calls_run(reps: int) -> int:
    """fib(18) (about 13,000 calls) and 1,500 vector steps, *reps* times."""
    total = 0
    for _ in range(reps):
        total += fib(18) + vec_walk(1500)
    return total


# ---------------------------------------------------------------------------
# difflib: stdlib code (SequenceMatcher, unified_diff, ndiff) on generated text

_VOCAB = (
    "the of and to in is was for on that with as by at from it an be this are or "
    "which have not but had they his her one all were can there been if more when "
    "will would who so no monitor event probe line branch code frame call return "
    "python trace profile debug coverage instrument bytecode offset callback tool"
).split()


def _sentence(rng: random.Random, words: int) -> str:
    """Random words from a small vocabulary, so that texts repeat like real ones."""
    return " ".join(rng.choice(_VOCAB) for _ in range(words))


def difflib_prepare(lines: int) -> tuple[list[str], list[str]]:
    """Two versions of a document: the second has edited, inserted and deleted lines."""
    rng = random.Random(669)
    old = [_sentence(rng, rng.randint(4, 12)) for _ in range(lines)]
    new = []
    for line in old:
        roll = rng.random()
        if roll < 0.05:
            continue  # deleted
        if roll < 0.12:
            words = line.split()
            words[rng.randrange(len(words))] = rng.choice(_VOCAB)
            new.append(" ".join(words))  # edited
        else:
            new.append(line)
        if rng.random() < 0.04:
            new.append(_sentence(rng, rng.randint(4, 12)))  # inserted
    return old, new


def difflib_run(state: tuple[list[str], list[str]]) -> int:
    """Line diff of the two versions, then character-level matching of changed lines."""
    old, new = state
    total = 0
    for line in difflib.unified_diff(old, new, "old", "new", lineterm=""):
        total += len(line)
    # Character-level matching of changed lines, as ndiff does for "? " hints.
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "replace":
            for a, b in zip(old[i1:i2], new[j1:j2]):
                total += int(difflib.SequenceMatcher(None, a, b).ratio() * 1000)
    chunk = len(old) // 8
    for line in difflib.ndiff(old[:chunk], new[:chunk]):
        total += len(line)
    return total


# ---------------------------------------------------------------------------
# json: dump to a stream (pure-Python generator encoder on every version, with
# a ``default`` hook) and load back (C scanner), then compare


class Point:
    """A non-JSON type, serialised through the ``default`` hook."""

    __slots__ = ("x", "y")

    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y


def _json_default(obj: Any) -> Any:
    """The ``default`` hook: one Python call per Point."""
    if isinstance(obj, Point):
        return {"x": obj.x, "y": obj.y}
    raise TypeError(type(obj).__name__)


def json_prepare(records: int) -> list[dict[str, Any]]:
    """Records with nested lists and dicts, like a typical API payload."""
    rng = random.Random(42)
    data = []
    for i in range(records):
        data.append(
            {
                "id": i,
                "name": _sentence(rng, 3),
                "active": rng.random() < 0.5,
                "score": round(rng.random() * 100, 3),
                "tags": [rng.choice(_VOCAB) for _ in range(rng.randint(0, 6))],
                "where": Point(rng.random(), rng.random()),
                "meta": {
                    "parent": None if i % 5 else i - 1,
                    "history": [{"v": j, "ok": j % 2 == 0} for j in range(rng.randint(1, 4))],
                },
            }
        )
    return data


def json_run(data: list[dict[str, Any]]) -> int:
    """Serialise with indent and sort_keys, parse back, serialise compactly."""
    # json.dump (not dumps) iterates the encoder, which takes the pure-Python
    # path on 3.11-3.13 alike; 3.13's dumps would use the C encoder even with indent.
    buf = io.StringIO()
    json.dump(data, buf, indent=1, sort_keys=True, default=_json_default)
    text = buf.getvalue()
    back = json.loads(text)
    again = json.dumps(back, sort_keys=True)
    return len(text) + len(back) + zlib.crc32(again.encode())


def _json_hot_code() -> types.CodeType:
    """The code of the nested ``_iterencode_dict`` of the pure-Python encoder."""
    for const in json.encoder._make_iterencode.__code__.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == "_iterencode_dict":
            return const
    raise LookupError("json.encoder._make_iterencode has no _iterencode_dict")


# ---------------------------------------------------------------------------
# textproc: pure-Python text processing without regular expressions:
# a character scanner, counting, a merge sort and greedy line wrapping


def tokenize(text: str) -> list[str]:
    """Split text into lower-case words by scanning characters one at a time."""
    words = []
    current: list[str] = []
    for ch in text:
        if ch.isalpha():
            current.append(ch.lower())
        elif ch == "'" and current:
            continue
        else:
            if current:
                words.append("".join(current))
                current = []
            if ch == "\0":
                # Never true for generated text.
                break
    if current:
        words.append("".join(current))
    return words


def merge_sort(items: list[Any]) -> list[Any]:
    """Top-down merge sort, written out in Python on purpose."""
    if len(items) <= 1:
        return items
    mid = len(items) // 2
    left = merge_sort(items[:mid])
    right = merge_sort(items[mid:])
    merged = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    merged.extend(left[i:])
    merged.extend(right[j:])
    return merged


def wrap(words: list[str], width: int) -> list[str]:
    """Greedy line filling."""
    lines = []
    line: list[str] = []
    used = 0
    for word in words:
        if line and used + 1 + len(word) > width:
            lines.append(" ".join(line))
            line, used = [], 0
        used += len(word) + (1 if line else 0)
        line.append(word)
    if line:
        lines.append(" ".join(line))
    return lines


def textproc_prepare(words: int) -> str:
    """A text of *words* words with capitals and punctuation."""
    rng = random.Random(7)
    parts = []
    for i in range(words):
        word = rng.choice(_VOCAB)
        if i % 11 == 0:
            word = word.capitalize()
        parts.append(word + (". " if i % 13 == 12 else ", " if i % 7 == 6 else " "))
    return "".join(parts)


def textproc_run(text: str) -> int:
    """Tokenise, count words and bigrams, rank them, wrap the text."""
    words = tokenize(text)
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    bigrams: dict[tuple[str, str], int] = {}
    for a, b in zip(words, words[1:]):
        bigrams[a, b] = bigrams.get((a, b), 0) + 1
    ranked = merge_sort([(-n, w) for w, n in counts.items()])
    ranked_pairs = merge_sort([(-n, a, b) for (a, b), n in bigrams.items()])
    lines = wrap(words, 72)
    return len(lines) + sum(len(line) for line in lines) + len(ranked) + ranked_pairs[0][0]


# ---------------------------------------------------------------------------
# ast: unparse and walk syntax trees of stdlib modules (many small methods,
# generators and context managers in Lib/ast.py)

_AST_SOURCES = (difflib, json.encoder, random)


def ast_prepare(reps: int) -> tuple[int, list[ast.AST]]:
    """Parse the stdlib sources once; parsing (C code) is not what is measured."""
    trees = []
    for module in _AST_SOURCES:
        with open(module.__file__, encoding="utf-8") as f:
            trees.append(ast.parse(f.read()))
    return reps, trees


class _ConstantRebuilder(ast.NodeTransformer):
    """Replaces every constant by a new node of the same value: generic_visit
    rebuilds each node's fields, which is what transforms spend their time on."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.copy_location(ast.Constant(node.value), node)


class _NameCounter(ast.NodeVisitor):
    """Counts Name nodes: NodeVisitor's generic_visit does the walking."""

    def __init__(self) -> None:
        self.names = 0

    def visit_Name(self, node: ast.Name) -> None:
        self.names += 1


def ast_run(state: tuple[int, list[ast.AST]]) -> int:
    """Unparse each tree and visit its names, *reps* times."""
    reps, trees = state
    total = 0
    for _ in range(reps):
        for tree in trees:
            tree = _ConstantRebuilder().visit(tree)
            total += len(ast.unparse(tree))
            counter = _NameCounter()
            counter.visit(tree)
            total += counter.names
    return total


def _ast_hot_code() -> types.CodeType:
    """ast.iter_fields: called for every node that generic_visit walks."""
    return ast.iter_fields.__code__


# ---------------------------------------------------------------------------
# toml: tomllib, a pure-Python parser (a character loop per token)


def toml_prepare(tables: int) -> str:
    """A TOML document of *tables* tables of strings, numbers, dates and arrays."""
    rng = random.Random(7)
    parts = []
    for t in range(tables):
        parts.append('[server_%d]\nname = "host-%d.example.org"\nport = %d\n'
                     'enabled = %s\nweight = %.3f\nstarted = 2024-%02d-%02dT10:%02d:00Z\n'
                     'tags = ["a%d", "b%d", \'lit\\eral\', """multi\nline"""]\n'
                     'limits = { cpu = %d, memory = "%dM" }\n'
                     % (t, t, 1024 + t, "true" if t % 2 else "false", rng.random(),
                        t % 12 + 1, t % 28 + 1, t % 60, t, t, rng.randrange(64),
                        rng.randrange(4096)))
    return "".join(parts)


def toml_run(text: str) -> int:
    """Parse the document; the checksum covers every value."""
    data = tomllib.loads(text)
    total = 0
    for table in data.values():
        total += table["port"] + len(table["name"]) + len(table["tags"]) + table["limits"]["cpu"]
        total += int(table["weight"] * 1000) + table["started"].minute + table["enabled"]
    return total


def _toml_hot_code() -> types.CodeType:
    """tomllib's parse_key_value_pair: once per key."""
    return tomllib._parser.parse_key_value_pair.__code__


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A named workload: how to build its input, run it and find its hot code."""

    name: str
    description: str
    prepare: Callable[[int], Any]
    run: Callable[[Any], int]
    size: int
    quick_size: int
    hot_code: Callable[[], types.CodeType]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("calls", "recursive fib(18) + small methods/properties, size = repetitions",
                 calls_prepare, calls_run, 300, 26, lambda: fib.__code__),
        Workload("difflib", "unified_diff + SequenceMatcher.ratio + ndiff, size = lines",
                 difflib_prepare, difflib_run, 25000, 2500,
                 lambda: difflib.SequenceMatcher.find_longest_match.__code__),
        Workload("json", "json.dump(indent, default=) to a stream + loads + dumps, size = records",
                 json_prepare, json_run, 9000, 850, _json_hot_code),
        Workload("textproc", "char scanner, counting, merge sort, wrapping, size = words",
                 textproc_prepare, textproc_run, 350000, 28000, lambda: tokenize.__code__),
        Workload("ast", "NodeTransformer + ast.unparse + NodeVisitor over 3 stdlib modules, size = repetitions",
                 ast_prepare, ast_run, 12, 1, _ast_hot_code),
        Workload("toml", "tomllib.loads (pure-Python parser) of a generated document, size = tables",
                 toml_prepare, toml_run, 7000, 700, _toml_hot_code),
    )
    if w.name != "toml" or tomllib is not None
}
