"""Runs the stdlib's test.test_json (less its recursion-limit and
subprocess tests, the slow ones) under cProfile.Profile or
lowimpact.profile.Profile and writes {key: (primitive calls, calls,
{caller: (calls, primitive calls)})} for the json package's functions.

cProfile's own stats keep one entry per key when several code objects share
it (the suite imports json afresh: three copies); its raw entries
(getstats()) are summed by key here, as lowimpact sums them.

    python suite_runner.py cprofile|lowimpact OUTFILE
"""

import io
import json
import marshal
import os
import sys
import unittest

MODULES = ["test.test_json." + name for name in (
    "test_decode", "test_default", "test_dump", "test_encode_basestring_ascii", "test_fail",
    "test_float", "test_indent", "test_pass1", "test_pass2", "test_pass3", "test_scanstring",
    "test_separators", "test_speedups", "test_unicode")]

which, out = sys.argv[1:3]
if which == "cprofile":
    import cProfile as module
else:
    import lowimpact.profile as module
scope = os.path.dirname(json.__file__) + os.sep
profile = module.Profile()
profile.enable()
try:
    unittest.main(module=None, argv=["suite", "-q"] + MODULES, exit=False,
                  testRunner=unittest.TextTestRunner(stream=io.StringIO()))
finally:
    profile.disable()

stats = {}
if which == "cprofile":
    entries = profile.getstats()
    for entry in entries:
        s = stats.setdefault(module.label(entry.code), [0, 0, {}])
        s[0] += entry.callcount - entry.reccallcount
        s[1] += entry.callcount
    for entry in entries:
        for sub in entry.calls or ():
            callers = stats[module.label(sub.code)][2]
            c = callers.setdefault(module.label(entry.code), [0, 0])
            c[0] += sub.callcount
            c[1] += sub.callcount - sub.reccallcount
else:
    profile.create_stats()
    for key, value in profile.stats.items():
        stats[key] = [value[0], value[1], {c: v[:2] for c, v in value[4].items()}]
with open(out, "wb") as f:
    marshal.dump({k: (v[0], v[1], {c: tuple(x) for c, x in v[2].items()})
                  for k, v in stats.items() if k[0].startswith(scope)}, f)
