import sys

from . import apply
from .ops import tokens


def evaluate(text):
    items = list(tokens(text))
    value = items[0]
    for i in range(1, len(items), 2):
        value = apply(items[i], value, items[i + 1])
    return value


if __name__ == "__main__":
    for expression in sys.argv[1:] or ["1 + 2 * 3"]:
        print(expression, "=", evaluate(expression))
