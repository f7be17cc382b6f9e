"""The `except*` part of gen_async.py (3.11 syntax; tests leave this file
out on 3.10)."""


def group(cleanup):
    try:
        raise ExceptionGroup("many", [KeyError("k"), TypeError("t")])
    except* KeyError:
        cleanup.append("group key")
    except* TypeError:
        cleanup.append("group type")
