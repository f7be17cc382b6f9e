"""Recursion, direct and mutual, with built-ins called at every level."""


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def is_even(n):
    return True if n == 0 else is_odd(n - 1)


def is_odd(n):
    return False if n == 0 else is_even(n - 1)


def walk(tree, depth=0):
    total = len(tree)
    for child in tree:
        if isinstance(child, list):
            total += walk(child, depth + 1)
    return max(total, depth)


def main():
    fib(15)
    [is_even(n) for n in range(30)]
    tree = [[1, [2, [3, [4]]]], [5, 6], [[[7]]]]
    for _ in range(20):
        walk(tree)


main()
