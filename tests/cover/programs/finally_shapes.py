"""Exits through `finally` and `with`: 3.10 copies a `finally` body onto
each way out of its `try` (fall-through, return, break, continue, and the
exception's handler), and its handlers come from a block stack; each
shape runs with inputs that leave some directions untaken."""

import contextlib


def loop_through_finally(items):
    seen = []
    for item in items:
        try:
            if item < 0:
                continue
            if item > 10:
                break
            seen.append(item)
        finally:
            seen.append("f")
    else:
        seen.append("done")
    return seen


def raise_in_handler(x):
    try:
        try:
            if x:
                raise KeyError(x)
        except KeyError:
            if x > 1:
                raise ValueError(x)
            return "key"
        finally:
            x = -x
    except ValueError:
        return "value"
    return x


def nested_with(fail, swallow):
    result = []
    try:
        with contextlib.suppress(RuntimeError):
            with contextlib.suppress(RuntimeError) if swallow else contextlib.nullcontext():
                if fail:
                    raise RuntimeError("inner")
                result.append("body")
            result.append("after inner")
    finally:
        result.append("finally")
    return result


def while_with_try(n):
    while n:
        n -= 1
        try:
            if n == 2:
                raise IndexError(n)
        except IndexError:
            continue
        if n == 5:
            break
    else:
        return "exhausted"
    return n


def return_value_of_finally(x):
    try:
        return x * 2
    finally:
        if x:
            print("returning", x)


def main():
    loop_through_finally([1, -1, 2])
    loop_through_finally([20])
    for x in (0, 1, 2):
        raise_in_handler(x)
    nested_with(False, False)
    nested_with(True, True)
    nested_with(True, False)
    while_with_try(4)
    while_with_try(7)
    return_value_of_finally(0)


if __name__ == "__main__":
    main()
