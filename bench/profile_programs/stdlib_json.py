"""The json package's own test suite, run by unittest (a script, so that
every profiler's command line can run it)."""

import unittest

unittest.main(module=None, argv=["stdlib_json", "-q", "test.test_json"])
