"""Random small programs for the monitoring fuzz tests, and a normalized event recorder.

This module uses only the standard library and nothing else of the test
suite, because it plays two parts: ``test_fuzz`` imports it, and the
differential test runs it as a script (``serve``) under a native interpreter,
the oracle, which has neither lowimpact nor hypothesis.

Programs come from a small grammar driven by a :class:`Chooser`, so the
same grammar serves hypothesis (whose draws shrink failures to small
programs) and a seeded ``random.Random`` (``python fuzzprog.py gen SEED``,
for looking at programs by hand).  Every program defines ``main()``, which
terminates quickly whatever was generated (loops are bounded by constants,
every call passes ``depth - 1`` and burns one unit of a global fuel) and
returns ``(checksum, LOG)``; ``LOG`` holds the names of the exceptions
that were caught.

Command line (run it with the interpreter whose events you want):

``serve``
    read JSON requests ``{"source": ...}`` (or ``{"source": ..., "plan": ...}``,
    see :class:`LiveRecorder`; either maybe with ``"gaps"``, see
    :class:`CompilerGaps`) from stdin, one a line; answer each with
    ``{"result": ..., "stream": [...]}`` or ``{"error": ...}``.
    ``{"version": true}`` is answered with the interpreter's version.
``gen SEED [portable] [live]``
    print a program.
``stream FILE``
    print the normalized event stream of the program in FILE, one event a line.
"""

from __future__ import annotations

import ast
import builtins
import dis
import functools
import gc
import json
import operator
import random
import sys
import threading
import traceback
import types
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar

FILENAME = "<fuzz>"
MODULE = "fuzz"

T = TypeVar("T")

# Events whose order and arguments do not depend on the bytecode, so a
# normalized stream can be compared across interpreter versions.  PY_THROW
# and STOP_ITERATION are left out: the portable grammar never throws into a
# generator, and STOP_ITERATION depends on how each version ends loops.
STREAM_EVENTS = (
    "PY_START",
    "PY_RESUME",
    "PY_RETURN",
    "PY_YIELD",
    "CALL",
    "LINE",
    "RAISE",
    "RERAISE",
    "EXCEPTION_HANDLED",
    "PY_UNWIND",
)
EXCEPTION_EVENTS = ("RAISE", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_THROW")

# Builtins the programs call, reported by name in CALL events.  Any other
# callable that is not the program's own is reported as "?".
FIXED_BUILTINS = (
    "len",
    "sorted",
    "min",
    "max",
    "str",
    "abs",
    "sum",
    "list",
    "range",
    "reversed",
    "int",
    "type",
    "next",
    "ValueError",
    "KeyError",
    "IndexError",
    "ZeroDivisionError",
)
_BUILTIN_NAMES = {id(getattr(builtins, name)): name for name in FIXED_BUILTINS}


# --------------------------------------------------------------------------
# Choices


class Chooser(Protocol):
    """Where the grammar's decisions come from.  Shrinking makes the first option,
    the low end of a range and False the simple choices, so lists of options
    start with the plainest."""

    def number(self, lo: int, hi: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...

    def flag(self) -> bool: ...


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def number(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def flag(self) -> bool:
        return self.rng.random() < 0.5


# --------------------------------------------------------------------------
# The grammar

PRELUDE = '''\
MOD = 1000003
FUEL = [0]
LOG = []


class Oops(Exception):
    pass


class CM:
    def __init__(self, log, tag):
        self.log = log
        self.tag = tag

    def __enter__(self):
        self.log.append("enter")
        return self.tag

    def __exit__(self, etype, exc, tb):
        if etype is None:
            self.log.append("exit")
            return False
        self.log.append(etype.__name__)
        return self.tag % 2 == 0 and issubclass(etype, Exception)
'''

HANDLED = (
    "ValueError",
    "Exception",
    "ZeroDivisionError",
    "LookupError",
    "Oops",
    "(KeyError, IndexError)",
    "(ValueError, Oops)",
    "ArithmeticError",
)

MAX_NEST = 3
LITERALS = ("0", "1", "2", "3", "5", "7")
# Live programs call HOOK(k) for k < LIVE_HOOKS and SPAWN(k), SPAWN_C(k) for
# k < LIVE_SPAWNS; the plan says what each k does (record_live_stream).
LIVE_HOOKS = 4
LIVE_SPAWNS = 2


@dataclass(frozen=True)
class Func:
    name: str
    kind: str  # "int" or "str" (what a function returns) or "gen"


@dataclass(frozen=True)
class Scope:
    """What a statement or expression at some point of the program may do."""

    readable: tuple[str, ...]
    assignable: tuple[str, ...]
    returns: Optional[str]  # the returned expression ("" in generators); None: no return
    nest: int = 0
    loop: bool = False  # break/continue allowed
    gen: bool = False  # yield allowed
    handler: bool = False  # bare raise allowed
    calls: bool = True  # a `depth` is in scope, so program functions may be called
    closures: bool = True
    # Nothing here may raise, break or return.  In portable programs that is
    # the body of a loop over a generator: leaving it would leave the
    # generator suspended, and 3.12 closes such a generator with
    # PY_THROW/PY_UNWIND and the lines of its frame where 3.13 finishes it
    # without running it when no handler encloses the yield.  In any program
    # it is a finally body of a generator (see stmt_try).
    safe: bool = False


class Builder:
    """Writes one program from the choices of a :class:`Chooser`."""

    def __init__(self, chooser: Chooser, portable: bool, budget: int = 36, live: bool = False) -> None:
        self.ch = chooser
        # Portable programs avoid constructs whose events legitimately differ
        # between interpreter versions (see Scope.safe and expr_comprehension).
        self.portable = portable
        # Live programs also call the harness's HOOK and SPAWN (see LiveRecorder).
        self.live = live
        self.budget = budget  # statements left for the whole program
        self.counter = 0
        self.lines: list[str] = []
        self.funcs: list[Func] = []

    # Output ------------------------------------------------------------

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return "%s%d" % (prefix, self.counter)

    # Program -----------------------------------------------------------

    def program(self) -> str:
        ch = self.ch
        funcs = [Func("f%d" % i, ch.pick(("int", "str"))) for i in range(ch.number(1, 3))]
        gens = [Func("g%d" % i, "gen") for i in range(ch.number(0, 2))]
        self.funcs = funcs + gens
        self.lines.extend(PRELUDE.splitlines())
        for func in self.funcs:
            self.lines.extend(["", ""])
            self.function(func)
        self.lines.extend(["", ""])
        self.main()
        return "\n".join(self.lines) + "\n"

    def function(self, func: Func) -> None:
        gen = func.kind == "gen"
        params = ("n", "depth") if gen else ("a", "b", "depth")
        base = {"int": "a + b", "str": "str(a + b)", "gen": ""}[func.kind]
        returns = {"int": "acc", "str": "str(acc)", "gen": ""}[func.kind]
        self.emit(0, "def %s(%s):" % (func.name, ", ".join(params)))
        # Fuel bounds the number of calls whatever the call graph looks like.
        self.emit(1, "FUEL[0] -= 1")
        self.emit(1, "if depth <= 0 or FUEL[0] <= 0:")
        self.emit(2, ("return " + base).rstrip())
        first = params[0]
        self.emit(1, "acc = %s" % first)
        self.emit(1, "x = %s + 1" % first)
        self.emit(1, "y = 2")
        scope = Scope(
            readable=params + ("acc", "x", "y"),
            assignable=("acc", "x", "y"),
            returns=returns,
            gen=gen,
        )
        self.block(scope, 1, 1, 4)
        if gen:
            self.emit(1, "yield acc")
        else:
            self.emit(1, "return " + returns)

    def main(self) -> None:
        ch = self.ch
        self.emit(0, "def main():")
        self.emit(1, "FUEL[0] = 30")
        self.emit(1, "del LOG[:]")
        self.emit(1, "acc = 0")
        for _ in range(ch.number(1, 3)):
            if self.live and ch.flag():
                self.live_statement(1)
            func = ch.pick(self.funcs)
            args = (ch.number(0, 9), ch.number(0, 9), ch.number(1, 3))
            self.emit(1, "try:")
            if func.kind == "gen":
                self.emit(2, "for v in %s(%d, %d):" % (func.name, args[0], args[2]))
                self.emit(3, "acc = (acc * 31 + v) % MOD")
            else:
                call = "%s(%d, %d, %d)" % ((func.name,) + args)
                if func.kind == "str":
                    call = "len(%s)" % call
                self.emit(2, "acc = (acc + %s) %% MOD" % call)
            self.emit(1, "except Exception as exc:")
            self.emit(2, "LOG.append(type(exc).__name__)")
        if self.live and ch.flag():
            self.live_statement(1)
        self.emit(1, "return acc, list(LOG)")

    # Statements --------------------------------------------------------

    def block(self, scope: Scope, indent: int, lo: int = 1, hi: int = 3) -> None:
        emitted = 0
        for _ in range(self.ch.number(lo, hi)):
            if self.budget <= 0:
                break
            self.budget -= 1
            self.statement(scope, indent)
            emitted += 1
        if emitted == 0 and lo > 0:
            self.emit(indent, "pass")

    def statement(self, s: Scope, ind: int) -> None:
        kinds = ["assign", "assign", "log"]
        if s.nest < MAX_NEST:
            kinds += ["if", "for", "while", "with"]
            if not s.safe:
                kinds += ["try", "try"]
                if s.closures:
                    kinds += ["closure", "lambda"]
        if s.loop:
            kinds.append("continue")
            if not s.safe:
                kinds.append("break")
        if not s.safe:
            if s.returns is not None:
                kinds.append("return")
            kinds.append("raise")
            if s.handler:
                kinds.append("reraise")
            if s.calls:
                kinds.append("call")
        if s.gen:
            kinds += ["yield", "yield"]
            if s.calls and self.gens() and not s.safe:
                kinds.append("yield_from")
        if self.live:
            # Neither raises, breaks nor returns: allowed in safe scopes too.
            kinds += ["hook", "hook", "spawn"]
        getattr(self, "stmt_" + self.ch.pick(kinds))(s, ind)

    def gens(self) -> list[Func]:
        return [f for f in self.funcs if f.kind == "gen"]

    def assignment(self, s: Scope, value: str) -> str:
        var = self.ch.pick(s.assignable)
        if var == "acc":
            return self.ch.pick(("acc = (acc + %s) %% MOD", "acc = (acc * 31 + %s) %% MOD")) % value
        return "%s = (%s) %% 1009" % (var, value)

    def stmt_assign(self, s: Scope, ind: int) -> None:
        self.emit(ind, self.assignment(s, self.expr(s, 2)))

    def stmt_log(self, s: Scope, ind: int) -> None:
        self.emit(ind, "LOG.append(%s)" % self.expr(s, 1))

    def stmt_call(self, s: Scope, ind: int) -> None:
        # Explicit so that recursion and calls that raise are common.
        self.emit(ind, self.assignment(s, self.expr_call(s, 1)))

    def stmt_if(self, s: Scope, ind: int) -> None:
        inner = replace(s, nest=s.nest + 1)
        self.emit(ind, "if %s:" % self.cond(s))
        self.block(inner, ind + 1)
        for _ in range(self.ch.number(0, 2)):
            self.emit(ind, "elif %s:" % self.cond(s))
            self.block(inner, ind + 1)
        if self.ch.flag():
            self.emit(ind, "else:")
            self.block(inner, ind + 1)

    def stmt_for(self, s: Scope, ind: int) -> None:
        ch = self.ch
        var = self.fresh("i")
        sources = ["range", "tuple", "reversed"]
        if s.calls and self.gens() and not s.safe:
            sources.append("gen")
        source = ch.pick(sources)
        if source == "range":
            iterable = "range(%d)" % ch.number(0, 3)
        elif source == "tuple":
            iterable = "(%s, %s, %s)" % (self.expr(s, 1), self.expr(s, 1), self.expr(s, 0))
        elif source == "reversed":
            iterable = "reversed(range(%d))" % ch.number(0, 3)
        else:
            iterable = "%s(%s, depth - 1)" % (ch.pick(self.gens()).name, self.expr(s, 1))
        body = replace(
            s,
            readable=s.readable + (var,),
            nest=s.nest + 1,
            loop=True,
            safe=s.safe or (source == "gen" and self.portable),
        )
        self.emit(ind, "for %s in %s:" % (var, iterable))
        self.block(body, ind + 1)
        if ch.flag():
            self.emit(ind, "else:")
            self.block(replace(s, nest=s.nest + 1), ind + 1)

    def stmt_while(self, s: Scope, ind: int) -> None:
        counter = self.fresh("w")
        limit = self.ch.number(0, 3)
        cond = "%s < %d" % (counter, limit)
        if self.ch.flag():
            cond += " and " + self.cond(s)
        self.emit(ind, "%s = 0" % counter)
        self.emit(ind, "while %s:" % cond)
        # Counting first keeps every `continue` from looping forever.
        self.emit(ind + 1, "%s += 1" % counter)
        body = replace(s, readable=s.readable + (counter,), nest=s.nest + 1, loop=True)
        self.block(body, ind + 1)
        if self.ch.flag():
            self.emit(ind, "else:")
            self.block(replace(s, nest=s.nest + 1), ind + 1)

    def stmt_with(self, s: Scope, ind: int) -> None:
        target = self.fresh("t")
        self.emit(ind, "with CM(LOG, %s) as %s:" % (self.expr(s, 1), target))
        self.block(replace(s, readable=s.readable + (target,), nest=s.nest + 1), ind + 1)

    def stmt_try(self, s: Scope, ind: int) -> None:
        ch = self.ch
        inner = replace(s, nest=s.nest + 1)
        self.emit(ind, "try:")
        self.block(inner, ind + 1)
        handlers = ch.number(0, 2)
        for _ in range(handlers):
            name = self.fresh("e")
            self.emit(ind, "except %s as %s:" % (ch.pick(HANDLED), name))
            # The name is unbound when the handler ends, so it is used at once only.
            self.emit(ind + 1, "LOG.append(type(%s).__name__)" % name)
            self.block(replace(inner, handler=True), ind + 1, 0, 2)
        if handlers and ch.flag():
            self.emit(ind, "else:")
            self.block(inner, ind + 1)
        if not handlers or ch.flag():
            self.emit(ind, "finally:")
            # This runs again when an abandoned generator is closed: a yield
            # here would be an error ("generator ignored GeneratorExit"), and
            # an exception would be printed as unraisable.
            body = replace(inner, gen=False, safe=s.safe or s.gen)
            self.block(body, ind + 1)
            if self.portable:
                # 3.10 and 3.11 give the RERAISE that ends the exceptional
                # path the line of the last statement compiled, which a
                # compound statement may not have run (an if's arm): a LINE
                # there that 3.12 does not report.  A simple statement last
                # gives it the line just run.
                self.emit(ind + 1, self.assignment(body, self.expr(body, 0)))

    def stmt_closure(self, s: Scope, ind: int) -> None:
        name = self.fresh("inner")
        assignable: tuple[str, ...] = ("r",)
        self.emit(ind, "def %s(v):" % name)
        if "acc" in s.assignable and self.ch.flag():
            self.emit(ind + 1, "nonlocal acc")
            assignable += ("acc",)
        self.emit(ind + 1, "r = (v + %s) %% 1009" % self.ch.pick(s.readable))
        body = Scope(
            readable=s.readable + ("v", "r"),
            assignable=assignable,
            returns="r",
            nest=s.nest + 1,
            calls=s.calls,
            closures=False,
        )
        self.block(body, ind + 1, 0, 2)
        self.emit(ind + 1, "return r")
        self.emit(ind, self.assignment(s, "%s(%s)" % (name, self.expr(s, 1))))

    def stmt_lambda(self, s: Scope, ind: int) -> None:
        q = self.fresh("q")
        key = self.expr(replace(s, readable=s.readable + (q,)), 1)
        items = ", ".join(self.expr(s, 1) for _ in range(3))
        value = "sorted((%s), key=lambda %s: (%s, %s))[%d]" % (items, q, key, q, self.ch.number(0, 2))
        self.emit(ind, self.assignment(s, value))

    def jump_cond(self, s: Scope) -> str:
        # The condition of a statement that is one jump (break, continue):
        # 3.9's optimizer sends a jump to a jump straight on to its target,
        # so where the condition's own code ends in a jump to the body
        # (`if a or b: continue`) that line never runs on 3.9 when it
        # jumps.  Portable programs avoid it.
        return self.expr(s, 2, not self.portable)

    def stmt_continue(self, s: Scope, ind: int) -> None:
        self.emit(ind, "if %s:" % self.jump_cond(s))
        self.emit(ind + 1, "continue")

    def stmt_break(self, s: Scope, ind: int) -> None:
        self.emit(ind, "if %s:" % self.jump_cond(s))
        self.emit(ind + 1, "break")

    def stmt_return(self, s: Scope, ind: int) -> None:
        assert s.returns is not None
        self.emit(ind, "if %s:" % self.cond(s))
        self.emit(ind + 1, ("return " + s.returns).rstrip())

    def stmt_raise(self, s: Scope, ind: int) -> None:
        exc = self.ch.pick(("ValueError(%s)", "Oops(str(%s))", "KeyError(%s)", "Oops(%s) from None"))
        self.emit(ind, "if %s:" % self.cond(s))
        self.emit(ind + 1, "raise " + exc % self.expr(s, 1))

    def stmt_reraise(self, s: Scope, ind: int) -> None:
        self.emit(ind, "if %s:" % self.cond(s))
        self.emit(ind + 1, "raise")

    def stmt_yield(self, s: Scope, ind: int) -> None:
        if self.ch.flag():
            self.emit(ind, "yield %s" % self.expr(s, 1))
        else:
            var = self.ch.pick(s.assignable)
            self.emit(ind, "%s = ((yield %s) or %s) %% 1009" % (var, self.expr(s, 1), var))

    def expr_live(self, s: Scope, b: int) -> str:
        # In the middle of a line, of a lambda or of a generator expression.
        call = self.ch.pick(("HOOK(%d)" % self.ch.number(0, LIVE_HOOKS - 1), self.spawn_call()))
        return "(%s + %s)" % (call, self.expr(s, b))

    def live_statement(self, ind: int) -> None:
        if self.ch.flag():
            self.stmt_spawn(None, ind)
        else:
            self.stmt_hook(None, ind)

    def stmt_hook(self, s: Optional[Scope], ind: int) -> None:
        self.emit(ind, "HOOK(%d)" % self.ch.number(0, LIVE_HOOKS - 1))

    def stmt_spawn(self, s: Optional[Scope], ind: int) -> None:
        # SPAWN is a Python function: the calling frame waits in a
        # Python-to-Python call.  SPAWN_C is a C callable: the calling frame
        # itself waits inside a call into C.
        self.emit(ind, self.spawn_call())

    def spawn_call(self) -> str:
        return "%s(%d)" % (self.ch.pick(("SPAWN", "SPAWN_C")), self.ch.number(0, LIVE_SPAWNS - 1))

    def stmt_yield_from(self, s: Scope, ind: int) -> None:
        self.emit(ind, "yield from %s(%s, depth - 1)" % (self.ch.pick(self.gens()).name, self.expr(s, 1)))

    # Expressions (always int or bool valued, one line) ---------------------

    def cond(self, s: Scope) -> str:
        return self.expr(s, 2)

    def expr(self, s: Scope, budget: int, jump_last: bool = True) -> str:
        """An expression; unless *jump_last*, not one whose code ends in a jump."""
        if budget <= 0:
            return self.atom(s)
        forms = ["atom", "atom", "arith", "compare", "not", "builtin", "genexpr"]
        if jump_last:
            forms += ["boolop", "ifexp"]
        if not s.safe:
            forms.append("risky")
            if s.calls:
                forms.append("call")
        if not self.portable:
            forms.append("comprehension")
        if self.live:
            forms.append("live")
        form = self.ch.pick(forms)
        if form == "atom":
            return self.atom(s)
        if form == "compare":
            return self.expr_compare(s, budget - 1, jump_last)
        return getattr(self, "expr_" + form)(s, budget - 1)

    def atom(self, s: Scope) -> str:
        return self.ch.pick(LITERALS + s.readable)

    def expr_arith(self, s: Scope, b: int) -> str:
        form = self.ch.pick(("(%s + %s)", "(%s - %s)", "(%s * %s %% 101)", "(%s %% 7 + %s)"))
        return form % (self.expr(s, b), self.expr(s, b))

    def expr_compare(self, s: Scope, b: int, jump_last: bool = True) -> str:
        if jump_last and self.ch.flag():
            return "(%s <= %s < %s)" % (self.expr(s, b), self.expr(s, b), self.expr(s, b))
        op = self.ch.pick(("<", "==", "!=", ">="))
        return "(%s %s %s)" % (self.expr(s, b), op, self.expr(s, b))

    def expr_boolop(self, s: Scope, b: int) -> str:
        form = self.ch.pick(("(%s and %s)", "(%s or %s)", "(%s and %s or %s)", "(%s or not %s and %s)"))
        return form % tuple(self.expr(s, b) for _ in range(form.count("%s")))

    def expr_not(self, s: Scope, b: int) -> str:
        return "(not %s)" % self.expr(s, b)

    def expr_ifexp(self, s: Scope, b: int) -> str:
        # A true arm that ends in a jump (`(y or b) if y else b`) leaves a
        # jump to a jump, which one compiler or another gives no line number:
        # then 3.13, in some places (finally bodies, constant operands), and
        # the 3.11 compiler report the line a second time where 3.12 does
        # not.  Portable programs avoid it.
        return "(%s if %s else %s)" % (self.expr(s, b, not self.portable), self.expr(s, b), self.expr(s, b))

    def expr_builtin(self, s: Scope, b: int) -> str:
        form = self.ch.pick(
            (
                "len(str(%s))",
                "min(%s, %s)",
                "max(%s, %s, %s)",
                "abs(%s)",
                "sorted((%s, %s, %s))[1]",
                "len(sorted((%s, %s)))",
            )
        )
        return form % tuple(self.expr(s, b) for _ in range(form.count("%s")))

    def expr_risky(self, s: Scope, b: int) -> str:
        form = self.ch.pick(
            (
                "(%s // (%s %% 3))",
                "(4, 5, 6)[%s %% 5]",
                "{0: 4, 1: 5}[%s %% 3]",
                "int('7' + 'x' * (%s %% 2))",
            )
        )
        return form % tuple(self.expr(s, b) for _ in range(form.count("%s")))

    def expr_call(self, s: Scope, b: int) -> str:
        func = self.ch.pick(self.funcs)
        if func.kind == "gen":
            call = "%s(%s, depth - 1)" % (func.name, self.expr(s, b))
            forms = ["sum(%s)", "len(list(%s))"]
            if not self.portable:
                # Leaves the generator suspended; see Scope.safe.
                forms.append("next(%s, 0)")
            return self.ch.pick(forms) % call
        call = "%s(%s, %s, depth - 1)" % (func.name, self.expr(s, b), self.expr(s, b))
        if func.kind == "str":
            return "len(%s)" % call
        if self.portable:
            # 3.12.1 reports the line again when a Python function returns
            # straight onto the merge point of a boolean operation
            # (`x and f()`), 3.13 does not; an operation after the call
            # keeps the return off the merge point.
            return "(%s %% MOD)" % call
        return call

    def expr_genexpr(self, s: Scope, b: int) -> str:
        q = self.fresh("q")
        inner = replace(s, readable=s.readable + (q,))
        return "sum(%s for %s in range(%d))" % (self.expr(inner, b), q, self.ch.number(0, 3))

    def expr_comprehension(self, s: Scope, b: int) -> str:
        # Not portable: 3.12 inlines list/dict/set comprehensions (PEP 709),
        # which are functions of their own, with their own events, on 3.11.
        q = self.fresh("q")
        inner = replace(s, readable=s.readable + (q,))
        n = self.ch.number(0, 3)
        form = self.ch.pick(
            (
                "len([%s for {q} in range({n}) if %s])",
                "sum({{{q}: %s for {q} in range({n})}}.values())",
                "len({{%s for {q} in range({n})}})",
            )
        )
        form = form.format(q=q, n=n)
        return form % tuple(self.expr(inner, b) for _ in range(form.count("%s")))


def generate(chooser: Chooser, portable: bool, live: bool = False) -> str:
    """The source of one program; *portable* keeps to constructs whose events
    agree across versions; *live* adds calls of ``HOOK`` and ``SPAWN``
    (see :func:`record_live_stream`)."""
    return Builder(chooser, portable, live=live).program()


def numbered(source: str) -> str:
    return "\n".join("%3d  %s" % (i, line) for i, line in enumerate(source.splitlines(), 1))


# --------------------------------------------------------------------------
# Recording a normalized event stream


def value_name(value: Any) -> str:
    """Small scalars by value, anything else by type: stable across versions and runs."""
    if value is None or type(value) in (int, bool, str):
        text = repr(value)
        if len(text) <= 40:
            return text
    return type(value).__name__


def callable_name(func: Any) -> str:
    """The program's own callables by qualified name, the fixed builtins by name, others "?"."""
    target = getattr(func, "__func__", func)
    code = getattr(target, "__code__", None)
    if isinstance(code, types.CodeType) and code.co_filename == FILENAME:
        # The function's name, which is its code's co_qualname on 3.11+.
        return target.__qualname__
    if isinstance(func, type) and func.__module__ == MODULE:
        return func.__qualname__
    harness = getattr(func, "fuzz_name", None)
    if isinstance(harness, str):
        return harness
    name = _BUILTIN_NAMES.get(id(func))
    if name is not None and getattr(builtins, name) is func:
        return name
    return "?"


def normalize(name: str, code: types.CodeType, args: tuple, qualname: str) -> tuple:
    """One event of *code*, named *qualname*, without offsets, which differ between bytecode versions."""
    if name == "LINE":
        return (name, qualname, args[0] - code.co_firstlineno)
    if name == "CALL":
        return (name, qualname, callable_name(args[1]))
    if name in ("PY_RETURN", "PY_YIELD"):
        return (name, qualname, value_name(args[1]))
    if name in EXCEPTION_EVENTS:
        return (name, qualname, type(args[1]).__name__)
    return (name, qualname)


def load(source: str) -> tuple[dict, Callable[[types.CodeType], str]]:
    """Compile *source* as the fuzz module and run its top level; the
    namespace, and the qualified names of its code (:func:`qualnames`)."""
    namespace: dict = {"__name__": MODULE}
    module_code = compile(source, FILENAME, "exec")
    exec(module_code, namespace)
    return namespace, qualnames(module_code)


def record_stream(
    M: Any, tool_id: int, source: str, names: Sequence[str] = STREAM_EVENTS, gaps: Optional[dict] = None
) -> tuple[str, list]:
    """Run ``main()`` of *source* with *names* enabled globally on *tool_id*.

    Returns the repr of what ``main()`` returned and the normalized events of
    the program's code, in order, but the LINE events *gaps* leaves out
    (:class:`CompilerGaps`; by default those of this interpreter's
    compiler).  The cyclic GC is off while the program runs so that no
    finalizer can add events at a random point.
    """
    namespace, qualname = load(source)
    stream: list = []
    left_out = CompilerGaps.of(source, gaps)

    def make(name: str) -> Callable[..., Any]:
        def callback(code: Any, *args: Any) -> None:
            if getattr(code, "co_filename", None) == FILENAME:
                if name == "LINE" and left_out.leaves_out(code, args[0], qualname(code), sys._getframe(1)):
                    return
                stream.append(normalize(name, code, args, qualname(code)))

        return callback

    event_set = 0
    for name in names:
        event_set |= getattr(M.events, name)
    M.use_tool_id(tool_id, "fuzz-stream")
    try:
        for name in names:
            M.register_callback(tool_id, getattr(M.events, name), make(name))
        gc_enabled = gc.isenabled()
        gc.disable()
        M.set_events(tool_id, event_set)
        try:
            result = namespace["main"]()
        finally:
            M.set_events(tool_id, 0)
            if gc_enabled:
                gc.enable()
    finally:
        for name in names:
            M.register_callback(tool_id, getattr(M.events, name), None)
        M.free_tool_id(tool_id)
    return repr(result), stream


class CompilerGaps:
    """The LINE events of a program that 3.9's compiler has no code for.

    3.9's compiler (before PEP 626) gives some lines no instruction at all
    (``pass``, an ``if`` on a constant it folds away, or only the POP_BLOCK
    of a try body whose last statement it dropped as dead) or to code that
    some paths jump past (a ``continue`` starting an ``if``'s body, which its
    optimizer threads jumps through), and the code that leaves a ``with``
    (calling ``__exit__``) the line of the body's last statement, where
    3.10+ give a line its NOP and that code the with's line, a second LINE
    event there.  The engine reports LINE from 3.9's own line
    table, so a stream compared with a 3.9 run leaves these events out, on
    both sides and from the code objects alone: on the lines 3.9's code
    objects of that name give no instruction (``lines``), and on the line of
    a with statement of theirs (``withs``) where the frame is not at its
    start.
    Triggers do not count what is left out.
    """

    def __init__(self, gaps: Optional[dict]) -> None:
        self.lines = None if gaps is None else {name: frozenset(lines) for name, lines in gaps["lines"].items()}
        self.withs = {} if gaps is None else {name: frozenset(lines) for name, lines in gaps["withs"].items()}
        self.entries: dict[tuple[types.CodeType, int], bool] = {}

    @classmethod
    def of(cls, source: str, gaps: Optional[dict]) -> "CompilerGaps":
        """*gaps* (from :func:`compiler_gaps` of the 3.9 side), or else this interpreter's own."""
        return cls(gaps if gaps is not None else compiler_gaps(source))

    def leaves_out(self, code: types.CodeType, line: int, qualname: str, frame: Any) -> bool:
        if self.lines is None:
            return False
        if line not in self.lines.get(qualname, ()):
            return True
        return line in self.withs.get(qualname, ()) and not self._enters_with(code, frame.f_lasti)

    def _enters_with(self, code: types.CodeType, lasti: int) -> bool:
        """Whether the frame is at the start of a with statement of the
        grammar's, which loads CM first (its exit, elsewhere on the line,
        does not)."""
        key = (code, lasti)
        if key not in self.entries:
            found = None
            for instruction in dis.get_instructions(code):
                if instruction.offset > lasti:
                    break
                found = instruction
            self.entries[key] = found is not None and found.opname in ("LOAD_GLOBAL", "LOAD_NAME") and found.argval == "CM"
        return self.entries[key]


def _dead_lines(tree: ast.AST) -> set[int]:
    """The lines of the statements that an if or a while on a constant
    (after the compiler's folding) never runs."""
    dead: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.If, ast.While)):
            continue
        test = compile(ast.Expression(body=node.test), FILENAME, "eval")
        ops = list(dis.get_instructions(test))
        if len(ops) != 2 or ops[0].opname != "LOAD_CONST":
            continue
        for statement in node.orelse if ops[0].argval else node.body:
            for sub in ast.walk(statement):
                if isinstance(sub, ast.stmt):
                    dead.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return dead


def _threaded_lines(tree: ast.AST) -> set[int]:
    """The lines of a continue or break that starts an if's body: it is one
    jump, and 3.9's optimizer sends the jumps that reach it (those of an
    `or`, a chained comparison, a conditional expression, a folded `if
    <constant>:` in the test) straight on to where it goes, so that its
    line is reported on some paths only."""
    return {node.body[0].lineno for node in ast.walk(tree)
            if isinstance(node, ast.If) and isinstance(node.body[0], (ast.Continue, ast.Break))}


def compiler_gaps(source: str) -> Optional[dict]:
    """What :class:`CompilerGaps` leaves out of *source*'s streams when this
    interpreter is 3.9, as JSON for the oracle; None on 3.10+ (their
    compilers agree with 3.12's on these lines)."""
    if sys.version_info >= (3, 10):
        return None
    module_code = compile(source, FILENAME, "exec")
    qualname = qualnames(module_code)
    # A pass compiles to nothing: the line it may have is code after it.
    # 3.9 compiles no code for what an if on a constant skips, but gives
    # its lines to the code that follows (a loop's jump back, a POP_BLOCK):
    # a line that runs natively never.
    tree = ast.parse(source)
    passes = ({node.lineno for node in ast.walk(tree) if isinstance(node, ast.Pass)}
              | _dead_lines(tree) | _threaded_lines(tree))
    lines: dict[str, set[int]] = {}
    for code in _nested_codes(module_code):
        # A line whose code is only POP_BLOCK may be a dead statement's
        # at the end of a try body, which the engine tells from a continue's
        # or a break's only by the code after the finally body: left out.
        found: set[int] = set()
        line = code.co_firstlineno
        for instruction in dis.get_instructions(code):
            line = instruction.starts_line or line
            if instruction.opname != "POP_BLOCK":
                found.add(line)
        lines.setdefault(qualname(code), set()).update(found - passes)
    withs: dict[str, set[int]] = {}
    for code in _nested_codes(module_code):
        line = code.co_firstlineno
        for instruction in dis.get_instructions(code):
            line = instruction.starts_line or line
            if instruction.opname == "SETUP_WITH":
                withs.setdefault(qualname(code), set()).add(line)
    return {
        "lines": {name: sorted(found) for name, found in lines.items()},
        "withs": {name: sorted(found) for name, found in withs.items()},
    }


# --------------------------------------------------------------------------
# Recording while events change: triggers, hooks and threads

# Local events whose callbacks record nothing: their streams differ between
# bytecode versions (offsets, how loops and conditions compile), but turning
# them on and off, and DISABLE from them, still exercise the monitoring
# under test, and they must not disturb the recorded events.  C_RETURN and
# C_RAISE come with CALL; their callbacks never answer DISABLE (that would
# be an error).
SILENT_LOCAL_EVENTS = ("INSTRUCTION", "JUMP", "BRANCH", "STOP_ITERATION")
SILENT_EVENTS = SILENT_LOCAL_EVENTS + ("PY_THROW", "C_RETURN", "C_RAISE")
RECORDED_LOCAL_EVENTS = tuple(name for name in STREAM_EVENTS if name not in EXCEPTION_EVENTS)
LIVE_LOCAL_EVENTS = RECORDED_LOCAL_EVENTS + SILENT_LOCAL_EVENTS
LIVE_GLOBAL_EVENTS = LIVE_LOCAL_EVENTS + tuple(name for name in EXCEPTION_EVENTS)


def first_line_of_one_liner(event: Sequence[Any]) -> bool:
    """Whether *event* is the LINE of the first line of a lambda or genexpr.

    3.13.0 does not report that line while PY_START is off for the code
    (gh-155992, research notes §15 (5)), so streams compared with 3.13 leave
    these events out, and triggers do not count them.
    """
    return event[0] == "LINE" and event[1].endswith(("<lambda>", "<genexpr>")) and event[2] == 0


def _nested_codes(module_code: types.CodeType) -> list[types.CodeType]:
    found: list[types.CodeType] = []
    pending = [c for c in module_code.co_consts if isinstance(c, types.CodeType)]
    while pending:
        code = pending.pop()
        found.append(code)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def program_codes(module_code: types.CodeType, qualname: Callable[[types.CodeType], str]) -> list[types.CodeType]:
    """The code objects nested in *module_code*, ordered by :func:`code_key`."""
    return sorted(_nested_codes(module_code), key=lambda c: (c.co_firstlineno, code_key(c, qualname)))


def qualnames(module_code: types.CodeType) -> Callable[[types.CodeType], str]:
    """The qualified name of each code object of the program *module_code*:
    co_qualname on 3.11+, :class:`MadeNames` on 3.10."""
    if sys.version_info >= (3, 11):
        return operator.attrgetter("co_qualname")
    return MadeNames(module_code)


class MadeNames:
    """The qualified names 3.10's compiler gives a program's code objects.

    3.10 has no co_qualname, but its MAKE_FUNCTION takes the name from the
    stack, where the compiler loads it as a constant right after the code
    object: the name that 3.11's compiler stores as co_qualname, computed by
    the same rules.  A class body alone is made under its bare name; its
    code first stores its qualified name as ``__qualname__``.  Code that no
    MAKE_FUNCTION makes (dead code a compiler kept) never runs and goes by
    co_name.
    """

    def __init__(self, module_code: types.CodeType) -> None:
        # Keeps the program's code objects, and so the ids below, alive.
        self.codes = [module_code] + _nested_codes(module_code)
        self.names: dict[int, str] = {}
        stored: dict[int, str] = {}
        for parent in self.codes:
            instructions = list(dis.get_instructions(parent))
            for first, second, third in zip(instructions, instructions[1:], instructions[2:]):
                if first.opname == "LOAD_CONST" and isinstance(first.argval, types.CodeType):
                    if second.opname == "LOAD_CONST" and third.opname == "MAKE_FUNCTION":
                        self.names[id(first.argval)] = second.argval
                elif first.opname == "LOAD_CONST" and second.opname == "STORE_NAME" and second.argval == "__qualname__":
                    stored[id(parent)] = first.argval
        self.names.update(stored)

    def __call__(self, code: types.CodeType) -> str:
        return self.names.get(id(code), code.co_name)


def code_key(code: types.CodeType, qualname: Callable[[types.CodeType], str]) -> str:
    """How plans name a program's code object, the same on every version.

    Not an index into :func:`program_codes`: compilers differ in the dead
    code they drop (3.12 drops a lambda under ``if (0 if a else not 1):``),
    and with it its code object.  The qualified name alone is not unique
    (two generator expressions of one function), but with the first line
    and the variable names (fresh in every lambda and genexpr) it is.
    """
    return "%s@%d(%s)" % (qualname(code), code.co_firstlineno, ",".join(code.co_varnames))


# Instructions that run Python code from C without being a call: a `for`
# over a generator, `yield from`, `with` calling __enter__, and calling
# __exit__ with an exception.  The 3.11 engine reaches a frame that waits in
# one of them, when events change, only where a trampoline fits after it,
# else at its next probe or loop header; natively every frame sees new
# events at its next instruction (docs/ENGINE.md, "Where it differs", the
# first item).  3.11-3.13 name the instruction that holds a frame's
# f_lasti alike in these places (FOR_ITER, SEND, BEFORE_WITH,
# WITH_EXCEPT_START; calls are CALL, or CALL_KW on 3.13); 3.10 names the
# first two YIELD_FROM and SETUP_WITH (its calls are CALL_FUNCTION and its
# kin).  The stream marks a change left out, so every version must leave
# out the same ones, whatever its own engine could do there.
RUNS_PYTHON_OUTSIDE_A_CALL = frozenset(
    {"FOR_ITER", "SEND", "BEFORE_WITH", "WITH_EXCEPT_START", "YIELD_FROM", "SETUP_WITH"}
)


def _opname_at(code: types.CodeType, lasti: int) -> str:
    """The instruction that holds offset *lasti* (3.12 puts f_lasti of a
    frame inside FOR_ITER_GEN on an inline cache unit)."""
    found = ""
    for instruction in dis.get_instructions(code):
        if instruction.offset > lasti:
            break
        found = instruction.opname
    return found


def waits_outside_a_call(frame: Any) -> bool:
    """Whether a program frame that calls *frame* (directly or through
    harness or C code) waits in an instruction of RUNS_PYTHON_OUTSIDE_A_CALL.

    Changes of events from there are left out of the plan: that is where the
    engine by design sees new events later than natively.
    """
    frame = frame.f_back
    while frame is not None:
        code = frame.f_code
        if code.co_filename == FILENAME and _opname_at(code, frame.f_lasti) in RUNS_PYTHON_OUTSIDE_A_CALL:
            return True
        frame = frame.f_back
    return False


def _mask(M: Any, names: Sequence[str]) -> int:
    mask = 0
    for name in names:
        mask |= getattr(M.events, name)
    return mask


def describe_action(action: dict) -> str:
    op = action["op"]
    if op == "restart":
        return "restart_events()"
    where = action["where"]
    target = "global" if where == "global" else "local of the running code" if where == "here" else "local of " + where
    return "%s %s: %s" % (op, target, "|".join(action["events"]) or "0")


def describe_plan(plan: dict) -> str:
    """The plan, one item a line, for failure reports."""
    lines = ["global events before main(): %s" % ("|".join(plan.get("global", ())) or "0")]
    for key, names in plan.get("local", ()):
        lines.append("local events of %s before main(): %s" % (key, "|".join(names)))
    if plan.get("disable"):
        lines.append("callbacks answer DISABLE for: %s" % " ".join(plan["disable"]))
    coverage = plan.get("coverage")
    if coverage is not None:
        which = "every code" if coverage["codes"] is None else "only %s" % (", ".join(coverage["codes"]) or "no code")
        lines.append(
            "coverage pattern: PY_START of %s adds local %s, then DISABLE"
            % (which, "|".join(coverage["events"]) or "0")
        )
    for i, trigger in enumerate(plan.get("triggers", ())):
        when = "every %s from #%d on" if trigger.get("every") else "at %s #%d"
        when %= (trigger["on"], trigger["nth"])
        lines.append("trigger %d: %s, %s" % (i, when, describe_action(trigger["action"])))
    for key in ("hooks", "spawns"):
        for k, action in enumerate(plan.get(key, ())):
            lines.append("%s(%d): %s" % (key[:-1].upper(), k, describe_action(action)))
    return "\n".join(lines)


class LiveRecorder:
    """Runs ``main()`` of a live program under a *plan* that changes events while it runs.

    The plan (plain JSON, so that the oracle runs the same one) says which
    events are on when ``main()`` starts, which local events callbacks
    answer ``DISABLE`` for, and when events change:

    ``triggers``
        from inside a callback: when the *nth* recorded event of kind *on*
        arrives (and, if *every*, each multiple of *nth*), after recording
        it, the callback carries out an action.
    ``coverage``
        the pattern of coverage.py, bdb and debugpy: every ``PY_START`` of
        program code (of the listed codes, or all) adds local events to the
        code that starts, and the callback answers ``DISABLE``.
    ``hooks``
        between statements: the program's ``HOOK(k)`` carries out action k.
    ``spawns``
        from another thread: the program's ``SPAWN(k)`` and ``SPAWN_C(k)``
        start a thread that carries out action k, and join it.  The program
        waits in ``join()`` meanwhile (so the stream is deterministic): its
        frames stand still in a call and must see the new events at their
        next instruction, as natively.

    No change is made while a caller of the program frame it comes from
    waits outside a call (:func:`waits_outside_a_call`); the marker says so.

    An action (:func:`describe_action`) sets, adds to or removes from the
    global events or the local events of the running code or of a program
    code (named by :func:`code_key`; one this compiler dropped as dead code
    is left alone: it never runs), or calls ``restart_events()``.  The
    stream holds the normalized events of program code and a marker where
    each action happens.
    """

    def __init__(self, M: Any, tool_id: int, source: str, plan: dict, gaps: Optional[dict] = None) -> None:
        self.M = M
        self.tool_id = tool_id
        self.plan = plan
        self.left_out = CompilerGaps.of(source, gaps)
        module_code = compile(source, FILENAME, "exec")
        self.qualname = qualnames(module_code)
        self.codes = program_codes(module_code, self.qualname)
        self.by_key = {code_key(code, self.qualname): code for code in self.codes}
        self.namespace: dict = {"__name__": MODULE}
        self.install_hooks(self.namespace)
        exec(module_code, self.namespace)
        self.stream: list = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.disable = frozenset(plan.get("disable", ()))
        coverage = plan.get("coverage")
        self.coverage_mask = _mask(M, coverage["events"]) if coverage is not None else None
        self.coverage_codes = None if coverage is None or coverage["codes"] is None else frozenset(coverage["codes"])

    # What the program calls (all return 0, so that they may be operands) --

    def install_hooks(self, namespace: dict) -> None:
        def hook(k: int) -> int:
            frame = sys._getframe(1)
            if self.marker(("HOOK", k), frame):
                self.act(self.action("hooks", k), frame.f_code)
            return 0

        def spawn(k: int) -> int:
            frame = sys._getframe(1)
            if self.marker(("SPAWN", k), frame):
                thread = threading.Thread(target=self.act, args=(self.action("spawns", k), frame.f_code))
                thread.start()
                thread.join()
            return 0

        hook.fuzz_name = "HOOK"  # type: ignore[attr-defined]
        spawn.fuzz_name = "SPAWN"  # type: ignore[attr-defined]
        spawn_c = functools.partial(spawn)
        spawn_c.fuzz_name = "SPAWN_C"  # type: ignore[attr-defined]
        namespace.update(HOOK=hook, SPAWN=spawn, SPAWN_C=spawn_c)

    def marker(self, marker: tuple, frame: Any) -> bool:
        """Records *marker* where the plan changes events from *frame*, the
        innermost program frame; False (and the marker says so) if the
        change is left out because a caller waits outside a call (see
        :func:`waits_outside_a_call`)."""
        if waits_outside_a_call(frame):
            self.stream.append(marker + ("left out",))
            return False
        self.stream.append(marker)
        return True

    def action(self, key: str, k: int) -> Optional[dict]:
        actions = self.plan.get(key, ())
        return actions[k] if k < len(actions) else None

    # Changing events -----------------------------------------------------

    def act(self, action: Optional[dict], here: types.CodeType) -> None:
        """Carries out *action*; errors are kept for the end, not raised into the program."""
        if action is None:
            return
        try:
            M, tool = self.M, self.tool_id
            op = action["op"]
            if op == "restart":
                M.restart_events()
                return
            mask = _mask(M, action["events"])
            where = action["where"]
            if where == "global":
                current = M.get_events(tool)
            else:
                code = here if where == "here" else self.by_key.get(where)
                if code is None:
                    return
                current = M.get_local_events(tool, code)
            new = {"set": mask, "add": current | mask, "remove": current & ~mask}[op]
            if where == "global":
                M.set_events(tool, new)
            else:
                M.set_local_events(tool, code, new)
        except BaseException:
            self.errors.append("%s:\n%s" % (describe_action(action), traceback.format_exc()))

    # Callbacks -------------------------------------------------------------

    def recorded(self, name: str) -> Callable[..., Any]:
        DISABLE = self.M.DISABLE
        answer = DISABLE if name in self.disable else None
        triggers = [(i, t) for i, t in enumerate(self.plan.get("triggers", ())) if t["on"] == name]
        coverage = name == "PY_START" and self.coverage_mask is not None

        def callback(code: Any, *args: Any) -> Any:
            if getattr(code, "co_filename", None) != FILENAME:
                return None  # harness code: the hooks, threading, this recorder
            if name == "LINE" and self.left_out.leaves_out(code, args[0], self.qualname(code), sys._getframe(1)):
                return answer
            event = normalize(name, code, args, self.qualname(code))
            self.stream.append(event)
            if first_line_of_one_liner(event):
                return answer
            count = self.counts[name] = self.counts.get(name, 0) + 1
            for i, trigger in triggers:
                nth = trigger["nth"]
                if count == nth or (trigger.get("every") and count % nth == 0):
                    if self.marker(("TRIGGER", i), sys._getframe(1)):
                        self.act(trigger["action"], code)
            if coverage:
                if self.coverage_codes is None or code_key(code, self.qualname) in self.coverage_codes:
                    try:
                        mask = self.M.get_local_events(self.tool_id, code) | self.coverage_mask
                        self.M.set_local_events(self.tool_id, code, mask)
                    except BaseException:
                        self.errors.append("coverage pattern:\n" + traceback.format_exc())
                return DISABLE
            return answer

        return callback

    def silent(self, name: str) -> Callable[..., Any]:
        answer = self.M.DISABLE if name in self.disable and name in SILENT_LOCAL_EVENTS else None

        def callback(code: Any, *args: Any) -> Any:
            return answer if getattr(code, "co_filename", None) == FILENAME else None

        return callback

    # Running ---------------------------------------------------------------

    def run(self) -> tuple[str, list]:
        M, tool, plan = self.M, self.tool_id, self.plan
        M.use_tool_id(tool, "fuzz-live")
        try:
            for name in STREAM_EVENTS:
                M.register_callback(tool, getattr(M.events, name), self.recorded(name))
            for name in SILENT_EVENTS:
                M.register_callback(tool, getattr(M.events, name), self.silent(name))
            gc_enabled = gc.isenabled()
            gc.disable()
            try:
                for key, names in plan.get("local", ()):
                    if key in self.by_key:
                        M.set_local_events(tool, self.by_key[key], _mask(M, names))
                M.set_events(tool, _mask(M, plan.get("global", ())))
                result = self.namespace["main"]()
            finally:
                M.set_events(tool, 0)
                for code in self.codes:
                    M.set_local_events(tool, code, 0)
                if gc_enabled:
                    gc.enable()
        finally:
            for name in STREAM_EVENTS + SILENT_EVENTS:
                M.register_callback(tool, getattr(M.events, name), None)
            M.free_tool_id(tool)
        if self.errors:
            raise RuntimeError("the plan could not be carried out:\n" + "\n".join(self.errors))
        return repr(result), self.stream


def record_live_stream(M: Any, tool_id: int, source: str, plan: dict, gaps: Optional[dict] = None) -> tuple[str, list]:
    """Run ``main()`` of the live program *source* under *plan* (see :class:`LiveRecorder`).

    Returns the repr of what ``main()`` returned and the stream: normalized
    events of the program's code and markers ``("TRIGGER", i)``,
    ``("HOOK", k)`` and ``("SPAWN", k)`` where the plan changed events
    (with ``"left out"`` where it would have but did not).
    """
    return LiveRecorder(M, tool_id, source, plan, gaps).run()


def run_plain(source: str) -> str:
    """The repr of what ``main()`` of a live program returns with no monitoring and hooks that do nothing."""

    def nothing(k: int) -> int:
        return 0

    namespace: dict = {"__name__": MODULE, "HOOK": nothing, "SPAWN": nothing, "SPAWN_C": nothing}
    exec(compile(source, FILENAME, "exec"), namespace)
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        return repr(namespace["main"]())
    finally:
        if gc_enabled:
            gc.enable()


def _monitoring() -> Any:
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        from lowimpact import monitoring  # type: ignore[no-redef]
    return monitoring


def serve(tool_id: int = 4) -> None:
    M = _monitoring()
    for line in sys.stdin:
        request = json.loads(line)
        if "version" in request:
            answer: dict = {"version": "%d.%d.%d" % sys.version_info[:3]}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
            continue
        try:
            if "plan" in request:
                result, stream = record_live_stream(M, tool_id, request["source"], request["plan"], request.get("gaps"))
            else:
                events = request.get("events", STREAM_EVENTS)
                result, stream = record_stream(M, tool_id, request["source"], events, request.get("gaps"))
            answer = {"result": result, "stream": stream}
        except BaseException:
            answer = {"error": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve()
    elif argv[:1] == ["gen"] and len(argv) >= 2:
        options = argv[2:]
        sys.stdout.write(generate(RandomChooser(int(argv[1])), portable="portable" in options, live="live" in options))
    elif argv[:1] == ["stream"] and len(argv) == 2:
        with open(argv[1]) as f:
            result, stream = record_stream(_monitoring(), 4, f.read())
        for event in stream:
            print(*event)
        print("result", result)
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
