"""Fibonacci numbers, to watch Python run:

    python -m lowimpact trace examples/fib.py
    python -m lowimpact trace --events all examples/fib.py

fib() calls itself and returns, fib_numbers() is a generator that yields and
is resumed, main() loops over it.
"""


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def fib_numbers(count):
    a, b = 0, 1
    for _ in range(count):
        yield a
        a, b = b, a + b


def main():
    total = 0
    for number in fib_numbers(4):
        total += number
    print("sum of the first 4 Fibonacci numbers:", total)
    print("fib(3) =", fib(3))


if __name__ == "__main__":
    main()
