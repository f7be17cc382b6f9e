"""Imported by first_calls.py: its module code calls its own functions once."""


def helper_setup(n):
    table = {}
    for i in range(n):
        table[i] = i * i
    return table


def helper_once(x):
    if x > 2:
        return "big"
    return "small"


def helper_never():
    return "not called"


TABLE = helper_setup(4)
KIND = helper_once(len(TABLE))
