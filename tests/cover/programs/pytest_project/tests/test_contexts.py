"""Tests whose phases run pkg's code under pytest-cov's contexts: a fixture
with setup and teardown, parametrized tests, tests run unmeasured
(no_cover marker and fixture), a failing test."""

import pytest

from pkg.mod import label, sign


@pytest.fixture
def around():
    sign(-4)
    yield
    label(3)


def test_setup_and_teardown(around):
    assert sign(1) == 1


@pytest.mark.parametrize("n", [1, -1])
def test_param(n):
    assert sign(n) == n


@pytest.mark.no_cover
def test_marked_no_cover():
    sign(0)
    label(1)


def test_fixture_no_cover(no_cover, around):
    sign(0)


def test_fails():
    label(2)
    raise AssertionError("expected to fail")


def test_after():
    assert label(4) == "even"
