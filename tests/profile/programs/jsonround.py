"""json round-trips through the pure-Python encoder paths (indent, a
default hook) and the decoder."""

import json


def default(obj):
    if isinstance(obj, set):
        return sorted(obj)
    raise TypeError(type(obj).__name__)


def main():
    records = [{"id": i, "tags": {"a%d" % (i % 3), "b"}, "nested": {"x": [i, i * 2.5]}}
               for i in range(30)]
    for indent in (None, 2):
        text = json.dumps(records, default=default, indent=indent, sort_keys=True)
        back = json.loads(text)
        assert back[3]["id"] == 3
    json.loads(json.dumps({"k": "v"}), object_hook=dict)


main()
