"""`match` statements (3.10 syntax) of branch_shapes.py and branches.py."""


def match_shapes(command):
    match command:
        case {"go": direction} if direction != "back":
            return direction
        case [x, y, *rest] if not rest:
            return x + y
        case [_, _, *_]:
            return "long"
        case str() as text if text.startswith("q"):
            return "quit"
        case 1 | 2 | 3:
            return "small"
        case None:
            return "none"
        case _:
            return "other"


def matching(command):
    match command.split():
        case ["go", direction]:
            return direction
        case ["stop"]:
            return None
        case _:
            return "?"
