"""A parser: tokenizer and recursive-descent evaluator of arithmetic
expressions over generated input."""

import random
import sys


def tokens(text):
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            j = i
            while j < n and text[j].isdigit():
                j += 1
            yield ("num", int(text[i:j]))
            i = j
        elif ch in "+-*/()":
            yield ("op", ch)
            i += 1
        else:
            raise SyntaxError(ch)


class Parser:
    def __init__(self, text):
        self.toks = list(tokens(text))
        self.pos = 0

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else (None, None)

    def next(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def expr(self):
        value = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.next()[1]
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self):
        value = self.factor()
        while self.peek()[1] in ("*", "/"):
            op = self.next()[1]
            rhs = self.factor()
            if op == "*":
                value *= rhs
            elif rhs:
                value //= rhs
        return value

    def factor(self):
        kind, tok = self.next()
        if kind == "num":
            return tok
        if tok == "(":
            value = self.expr()
            self.next()
            return value
        if tok == "-":
            return -self.factor()
        raise SyntaxError(tok)


def generate(rng, depth):
    if depth == 0 or rng.random() < 0.3:
        return str(rng.randint(0, 99))
    op = rng.choice("+-*/")
    left, right = generate(rng, depth - 1), generate(rng, depth - 1)
    return "(%s %s %s)" % (left, op, right) if rng.random() < 0.5 else "%s %s %s" % (left, op, right)


if __name__ == "__main__":
    rng = random.Random(2)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    total = 0
    for _ in range(count):
        total += Parser(generate(rng, 6)).expr()
    print(total)
