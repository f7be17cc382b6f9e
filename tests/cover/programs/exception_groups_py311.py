"""The `except*` shape of branch_shapes.py (3.11 syntax; tests leave this
file out on 3.10)."""


def exception_groups(x):
    try:
        if x:
            raise ExceptionGroup("group", [ValueError(1), KeyError(2)])
    except* ValueError:
        handled = "value"
    except* KeyError:
        handled = "key"
    else:
        handled = None
    return handled
