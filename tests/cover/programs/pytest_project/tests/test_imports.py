import os
import sys


def test_what_is_imported():
    # The outer test reads this to learn what pytest's process had imported.
    with open(os.environ["IMPORTS_FILE"], "w") as stream:
        stream.write("\n".join(sorted(sys.modules)))
