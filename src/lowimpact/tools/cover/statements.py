"""The first line of each multi-line statement of a source text, faster.

coverage.py reports a statement spanning several lines by its first line;
its map of them (``coverage.parser.multiline_map_from_text``) comes from a
full tokenization, which on 3.11 (a tokenizer written in Python) costs more
than the rest of saving the data.  :func:`multiline_map` gives the same map
from a scan for the few characters that decide where a logical line ends:
brackets, comments, newlines, strings and backslash continuations.  A
logical line with anything the scan does not follow -- a string that is not
the same token on every version (an f-string whose fields hold a backslash,
a comment or the string's own quote, one on several lines), a backslash
continuation onto a blank line or a comment, a control or non-ASCII
character -- is handed, from its first line, to the standard tokenizer, and
the scan goes on after it; so those strings and their version differences
are the tokenizer's, as in coverage.py.  (Tokenizing a line costs most the
first time, on 3.11 and before: the tokenizer compiles its patterns.)

The map: for each logical line (from its first token that is not a comment
to its NEWLINE) that ends on another line than it starts, every line from
its first to its last maps to its first.  tests/cover/test_statements.py
compares it with coverage.py's on the standard library.
"""

from __future__ import annotations

import re
import tokenize
from typing import Dict, List, Optional

__all__ = ["multiline_map"]

# What the scan stops at: brackets, a comment, a newline, quotes, a
# backslash -- and what makes it hand the logical line to the tokenizer:
# anything but printable ASCII, tab and form feed.  (One negated set, of
# the characters the scan goes past -- tab, form feed, printable ASCII but
# brackets, the hash, quotes and the backslash --, which the regular
# expression engine searches for a character at a time, where for two sets
# it tries a match at each.)
_STOPS = re.compile(r"[^\t\x0c\x20\x21\x24-\x26\x2a-\x5a\x5e-\x7a\x7c\x7e]")
_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")
_BLANK = " \t\x0c"   # the tokenizer's whitespace between tokens


def multiline_map(text: str) -> Dict[int, int]:
    """Each line of a multi-line statement of *text* -> its first line.

    Raises what the tokenizer raises for the statements it reads; on text
    the tokenizer refuses elsewhere (inconsistent dedents, brackets left
    open at the end on 3.12+) it may give a map where coverage.py's raises:
    no code that ran comes from such text.
    """
    mapping: Dict[int, int] = {}
    search = _STOPS.search
    size = len(text)
    lines: Optional[List[str]] = None   # made at the first hand-over
    starts: List[int] = []
    pos = line_start = 0
    line = 1
    depth = 0
    first = 0   # the first line of the logical line under way (0: none yet)
    while True:
        found = search(text, pos)
        if found is None:
            break
        at = found.start()
        char = text[at]
        if char == "\n" or char == "#":
            if not first and text[line_start:at].strip(_BLANK):
                first = line
            if char == "#":
                # A comment runs to the end of its line.
                newline = text.find("\n", at)
                if newline < 0:
                    pos = line_start = size
                    break
                at = newline
            if not depth and first:
                if first != line:
                    for number in range(first, line + 1):
                        mapping[number] = first
                first = 0
            line += 1
            pos = line_start = at + 1
            continue
        if char in _OPEN:
            first = first or line
            depth += 1
            pos = at + 1
            continue
        if char in _CLOSE and depth:
            depth -= 1
            pos = at + 1
            continue
        if char == "'" or char == '"':
            triple = text.startswith(char * 3, at)
            string = (_TRIPLE if triple else _STRING)[char].match(text, at)
            if string is not None and (not at or text[at - 1] not in _PREFIX_CHARS
                                       or _followed(text, at, string.end(), triple)):
                first = first or line
                pos = string.end()
                if triple:
                    breaks = text.count("\n", at, pos)
                    if breaks:
                        line += breaks
                        line_start = text.rfind("\n", at, pos) + 1
                continue
        if (char == "\\" and text.startswith("\n", at + 1)
                and (first or text[line_start:at].strip(_BLANK))):
            # A backslash continuation of a line with something on it, onto
            # one with a token on it: the logical line goes on there.
            end = text.find("\n", at + 2)
            continued = text[at + 2:end if end >= 0 else size].lstrip(_BLANK)
            if continued and continued[0] != "#":
                first = first or line
                line += 1
                pos = line_start = at + 2
                continue
        # A string the scan does not follow (with a control character, an
        # f-string with a backslash, a comment or a quote of its own kind
        # in it, one continued by a backslash), another continuation, an
        # unusual character, a stray closing bracket: the tokenizer reads
        # this logical line.
        if lines is None:
            lines = _split_on_newlines(text)
            starts = [0]
            for physical in lines:
                starts.append(starts[-1] + len(physical))
        start_line = first or line
        last = _tokenize_one(lines, start_line, mapping)
        if last is None:
            return mapping
        line = last + 1
        if line > len(lines):
            return mapping
        pos = line_start = starts[line - 1]
        depth = 0
        first = 0
    # The end of the text: the tokenizer ends the last line there (a
    # statement left in brackets has no end: nothing of it is mapped).
    if depth:
        return mapping
    if not first and text[line_start:size].strip(_BLANK):
        first = line
    if first and first != line:
        for number in range(first, line + 1):
            mapping[number] = first
    return mapping


# A string on one line with no control character (a backslash escapes the
# next character, a quote too, in raw strings as well).  Each pattern reads
# the runs of characters between backslashes and quotes as one repeat of a
# character set, which the regular expression engine takes a character at a
# time without a backtracking state (most of what the scan reads is
# docstrings).
_STRING = {
    quote: re.compile(r"{q}{plain}*(?:\\{escaped}{plain}*)*{q}".format(
        q=quote, plain=r"[^%s\\\x00-\x08\x0a-\x1f\x7f]" % quote,
        escaped=r"[^\x00-\x08\x0a-\x1f\x7f]"))
    for quote in "'\""
}
# A triple-quoted string with no control character but newlines and tabs;
# it ends at the first three quotes that no backslash escapes.
_TRIPLE = {
    quote: re.compile(r"{q}{q}{q}{plain}*(?:(?:\\{escaped}|{q}(?!{q}{q})){plain}*)*{q}{q}{q}"
                      .format(q=quote, plain=r"[^%s\\\x00-\x08\x0b-\x1f\x7f]" % quote,
                              escaped=r"[^\x00-\x08\x0b-\x1f\x7f]"))
    for quote in "'\""
}
# The characters before a quote: True for those of the prefixes the scan
# follows as they are (r, b, u), False for other name characters (f-strings,
# whose replacement fields may hold quotes and brackets, and anything new).
_PREFIX_CHARS = dict.fromkeys("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
                              False)
_PREFIX_CHARS.update(dict.fromkeys("rRbBuU", True))


_F_PREFIXES = frozenset({"f", "rf", "fr"})
# What decides where an f-string's replacement fields end.
_FIELD_CHARS = re.compile(r"[{}'\"]")


def _followed(text: str, at: int, end: int, triple: bool) -> bool:
    """Whether the string ``text[at:end]`` (quotes included), which the
    string patterns matched, is one token ending there on every version: a
    prefix of only r, b, u, or a one-line f-string whose fields the scan can
    follow (:func:`_plain_fields`)."""
    start = at
    while start and text[start - 1] in _PREFIX_CHARS:
        start -= 1
    prefix = text[start:at]
    if all(_PREFIX_CHARS[char] for char in prefix):
        return True
    return not triple and prefix.lower() in _F_PREFIXES and _plain_fields(text[at + 1:end - 1],
                                                                          text[at])


def _plain_fields(body: str, quote: str) -> bool:
    """Whether an f-string's *body* ends where its closing *quote* stands
    for the tokenizers of every version: up to 3.11 an f-string is a string
    (the pattern's), from 3.12 on its replacement fields are tokens, which
    may hold strings, so the string ends where its fields are all closed.
    The body must have no backslash, comment or three quotes, and its
    fields, with the strings in them (of the other quote), must close."""
    other = "'" if quote == '"' else '"'
    if "\\" in body or "#" in body or other * 3 in body:
        return False
    depth = 0
    at = 0
    while True:
        found = _FIELD_CHARS.search(body, at)
        if found is None:
            return depth == 0
        at = found.start()
        char = body[at]
        if char == "{":
            if not depth and body.startswith("{", at + 1):
                at += 1   # a literal {{
            else:
                depth += 1
        elif char == "}":
            if depth:
                depth -= 1
            elif body.startswith("}", at + 1):
                at += 1   # a literal }}
            else:
                return False
        elif depth:
            # A string in a field (a quote in the text around them is text).
            at = body.find(other, at + 1)
            if at < 0:
                return False
        at += 1


def _split_on_newlines(text: str) -> List[str]:
    """The lines of *text* as the tokenizer reads them through
    ``io.StringIO(text).readline``: at "\\n" only (``str.splitlines`` also
    breaks at \\v, \\f, \\x1c, \\u2028...)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _tokenize_one(lines: List[str], start: int, mapping: Dict[int, int]) -> Optional[int]:
    """Tokenize from line *start* (1-based; the tokenizer's state is fresh
    there) to the end of the first logical line, adding it to *mapping*
    when it spans lines.  The last line of that logical line, or None at
    the end of the text."""
    index = start - 1

    def readline() -> str:
        nonlocal index
        if index < len(lines):
            index += 1
            return lines[index - 1]
        return ""

    offset = start - 1
    first = 0
    for kind, text, (start_row, _), (end_row, _), _ in tokenize.generate_tokens(readline):
        if kind == tokenize.NEWLINE:
            end_row += offset
            if first and end_row != first:
                for number in range(first, end_row + 1):
                    mapping[number] = first
            return end_row
        if kind == tokenize.ENDMARKER:
            return None
        if not first and kind != tokenize.COMMENT and text.strip():
            first = start_row + offset
    return None

