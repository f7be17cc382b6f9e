"""tests/cover/programs holds programs the tests run (a small project with its
own tests among them), not tests of this suite."""

collect_ignore = ["programs"]
