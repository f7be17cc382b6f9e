import importlib
import sys

debugger = importlib.import_module(sys.argv[1])


def divide(a, b):
    q = a / b
    return q


def main():
    debugger.set_trace(header="-- entering --")
    total = divide(6, 3)
    try:
        divide(total, 0)
    except ZeroDivisionError:
        debugger.post_mortem()
    print("total", total)


main()
