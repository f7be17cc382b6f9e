"""statements.multiline_map gives coverage.py's multiline map
(``coverage.parser.multiline_map_from_text``) without tokenizing every
line: the two must agree on any source the tokenizer reads.  (Where it
refuses the source -- not the source of code that ran -- coverage.py's
raises and the scan may not: such cases are only checked not to crash.)"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from coverage.python import get_python_source

try:
    from coverage.parser import multiline_map_from_text
except ImportError:
    # coverage.py 7.10 (the last for 3.9) makes the map in its parser's
    # tokenizing pass alone.
    from coverage.parser import PythonParser
    from coverage.phystokens import generate_tokens

    def multiline_map_from_text(text: str) -> dict:
        list(generate_tokens(text))   # raises where the tokenizer refuses the text
        parser = PythonParser(text=text)
        try:
            parser._raw_parse()
        except Exception:
            pass   # (compiling the text, after the tokenizing pass made the map)
        return parser._multiline

from lowimpact.tools.cover import statements
from lowimpact.tools.cover.statements import multiline_map

STDLIB = Path(sysconfig.get_path("stdlib"))
PROGRAMS = Path(__file__).parent / "programs"

CASES = {
    "brackets": "x = (1,\n     2)\ny = [\n  3,  # a comment ( with [ brackets\n]\nz = {}\n",
    "strings_with_brackets": "a = '(' + \")\"\nb = f(')',\n      ']')\nc = '#' + (\n 1)\n",
    "comment_quotes": "x = 1  # it's \"quoted\" (\ny = (2  # don't\n     )\n",
    "escapes": "a = 'it\\'s' + \"a \\\"b\\\" (\"\nb = ('\\\\',\n     1)\nc = r'\\'' + (\n 1)\n",
    "continued_string": "a = 'one \\\ntwo'\nb = 1\n",
    "backslash": "x = 1 + \\\n    2\nif x and \\\n   x:\n    pass\n",
    "triple": 'def f():\n    """Doc (\n    with \\""" and \'\'\' inside\n    """\n    return """a\nb"""  \n',
    "triple_quote_runs": "a = '''x''''' + 'y'\nb = ''''x'\n'''\nc = 1\n",
    "empty_strings": "a = '' + \"\"\nb = ('',\n  \"\")\n",
    "prefixes": "a = rb'(' + Br\"[\" + u'{'\nb = (rb'''\n''', 1)\n",
    "fstrings": "a = f'{x!r:>{w}}' + (\n  f\"{y}\")\nb = f'''{\n1}'''\nc = rf'{{(' \n",
    "fstring_fields": "a = f\"{x['a']}\" + f'{y[\"}\"]}' + (\n  f\"{{}}{z:>{w}}\")\n"
                      "b = f\"it's {x!r}\" + Rf'{a}{{' \\\n  + F\"{b['{']}\"\n",
    "fstring_quotes_in_fields": "a = f\"{x[\"a\"]}\" + (\n 1)\nb = f'{c[\"\"]}' + (\n 2)\n",
    "continuations": "x = 1 + \\\n  2\ny = (1 +\\\n 2)\nz = [\n 1] + \\\n  [2]\n",
    # (Handed to the tokenizer: a continuation with nothing before it, onto
    # a comment, onto a blank line.)
    "odd_continuations": "if x:\n    \\\n    pass\nw = 1 + \\\n  # c\n  4\nz = 3 + \\\n\n4\n"
                         "q = (1,\n 2)\n",
    "semicolons": "a = 1; b = (2,\n 3); c = 4\n",
    "compound": "if (a and\n        b): pass\nelse: x = [\n 1]\nwhile (x\n       ):\n    break\n",
    "decorators": "@dec(\n  1)\n@other\ndef f(a,\n      b):\n    return (a +\n            b)\n",
    "blank_and_comment_lines": "\n# c\n   \nx = (\n\n  # inside\n  1)\n\n",
    "no_final_newline": "x = (1,\n     2)",
    "comment_at_end": "x = 1\n# the end",
    "crlf": "x = (1,\r\n     2)\r\ny = 3\r\n",
    "form_feed": "x = 1\n\x0c\ny = (2,\n 3)\n",
    "vertical_tab_in_string": "x = ('\x0b',\n 1)\n",
    "unicode": "ñame = (1,\n        2)\ns = 'é' + (\n 'ü')\n",
    "indented": "class C:\n    def f(self):\n        return (1,\n                2)\n    x = [\n        3]\n",
    "unclosed": "x = (1,\n",
    "stray_close": "x = 1)\ny = (2,\n 3)\n",
}


def same_as_coverage_py(text: str) -> bool:
    """Whether the maps agree (True too where the tokenizer refuses *text*)."""
    try:
        expected = multiline_map_from_text(text)
    except Exception:
        try:
            multiline_map(text)
        except Exception:
            pass
        return True
    return multiline_map(text) == expected


def test_the_cases_are_python() -> None:
    refused = {name for name, text in CASES.items() if not _tokenizes(text)}
    assert refused <= {"unclosed", "stray_close"}


def _tokenizes(text: str) -> bool:
    try:
        multiline_map_from_text(text)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", sorted(CASES))
def test_as_coverage_py_on_cases(name: str) -> None:
    assert same_as_coverage_py(CASES[name])


def sources():
    yield from sorted(PROGRAMS.glob("*.py"))
    for name in ("argparse.py", "typing.py", "ast.py", "inspect.py", "difflib.py",
                 "json/decoder.py", "email/_header_value_parser.py", "test/test_fstring.py",
                 "test/test_grammar.py", "test/test_tokenize.py", "test/test_email/test_email.py"):
        path = STDLIB / name
        if path.exists():
            yield path


@pytest.mark.parametrize("path", list(sources()), ids=lambda p: p.name)
def test_as_coverage_py_on_sources(path: Path) -> None:
    text = get_python_source(str(path))
    expected = multiline_map_from_text(text)
    assert multiline_map(text) == expected
    # Texts that start at a multi-line statement and end anywhere (inside
    # a statement, a string).
    lines = text.split("\n")
    for first in sorted(set(expected.values()))[:150]:
        part = "\n".join(lines[first - 1:first + 29])
        assert same_as_coverage_py(part), (first, part)


@pytest.mark.parametrize("name", ["fstring_fields", "continuations", "triple", "prefixes"])
def test_what_the_scan_reads_alone(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One-line f-strings whose fields (and the strings in them) close, and
    backslash continuations onto a line with a token, need no tokenizer
    (which costs more than the rest of saving on 3.11 the first time: it
    compiles its patterns)."""
    def no_tokenizer(*args: object) -> None:
        raise AssertionError("handed to the tokenizer")

    expected = multiline_map_from_text(CASES[name])
    monkeypatch.setattr(statements, "_tokenize_one", no_tokenizer)
    assert multiline_map(CASES[name]) == expected
