"""A program whose functions coverage.py's dynamic_context = test_function
takes for tests: module functions, unittest methods and runTest, a test
generator, tests that raise, a test that calls another test-named function
(no new context inside a context), recursion, and code run between tests."""

import unittest


def classify(n):
    if n < 0:
        return "neg"
    for i in range(n):
        if i == 3:
            break
    return "small" if n < 3 else "big"


def test_positive():
    assert classify(5) == "big"


def test_negative():
    classify(-1)
    test_helper_inner()


def test_helper_inner():
    return classify(1)


def test_recursive(depth=2):
    if depth:
        return test_recursive(depth - 1)
    return classify(2)


def test_raises():
    classify(4)
    raise KeyError("boom")


def test_generator():
    yield classify(0)
    yield classify(-5)


class Case(unittest.TestCase):
    def test_method(self):
        classify(3)

    def runTest(self):
        classify(-2)


def not_a_test():
    return classify(10)


def main():
    test_positive()
    not_a_test()
    test_negative()
    test_recursive()
    try:
        test_raises()
    except KeyError:
        pass
    list(test_generator())
    suite = unittest.TestSuite([Case("test_method"), Case()])
    unittest.TextTestRunner(stream=open("/dev/null", "w")).run(suite)
    test_positive()
    classify(1)


main()
