"""pytest plugin: ``pytest --li-cov=SOURCE``, pytest-cov's options measured by
lowimpact cover.

The options are pytest-cov's with ``li-`` in their names, so that both
plugins can be installed side by side: ``--li-cov[=SOURCE]`` (repeatable;
without a value, what the configuration says), ``--li-cov-report=TYPE``
(``term``, ``term-missing``, ``term:skip-covered``, ``annotate[:DIR]``,
``html[:DIR]``, ``xml[:FILE]``, ``json[:FILE]``, ``lcov[:FILE]``, and
``subline``; repeatable; an empty value: no report), ``--li-cov-config``,
``--li-cov-branch``, ``--li-cov-fail-under=MIN``, ``--li-cov-append``,
``--li-cov-context=test``, ``--no-li-cov-on-fail`` and ``--no-li-cov``; and
pytest-cov's ``no_cover`` marker and fixture.  As with pytest-cov,
measuring starts before conftest.py files and test modules are imported,
the data goes to a parallel file combined into the configured data file at
the end, and a total below ``fail-under`` (the option, or ``[report]
fail_under``) fails the session.  Under pytest-xdist each worker measures
itself and writes its parallel file; the controller combines them with its
own and reports, once.  With ``--li-cov-context=test`` each test's phases
are recorded under pytest-cov's contexts, ``<nodeid>|setup``, ``|run`` and
``|teardown``; a test marked ``no_cover`` (or using the ``no_cover``
fixture) runs unmeasured.

Nothing of lowimpact's engine or coverage.py is imported unless
``--li-cov`` is given: this module is all pytest loads otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import pytest

_TERM = ("term", "term-missing")
_TO_FILE = ("annotate", "html", "xml", "json", "lcov")
_OTHER = ("subline",)


def _report_type(text: str) -> tuple:
    """``TYPE[:DEST]`` (``term[-missing]:skip-covered``) as (type, dest)."""
    kind, _, dest = text.partition(":")
    if text == "":
        return ("", None)
    if kind in _TERM:
        if dest not in ("", "skip-covered"):
            raise argparse.ArgumentTypeError("%s takes only :skip-covered, not %r" % (kind, dest))
        return (kind, dest or None)
    if kind in _TO_FILE:
        return (kind, dest or None)
    if kind in _OTHER and not dest:
        return (kind, None)
    raise argparse.ArgumentTypeError(
        "invalid report %r (choose from %s)" % (text, ", ".join(_TERM + _TO_FILE + _OTHER)))


def _percent(text: str) -> float:
    try:
        value = int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number is required, not %r" % text) from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("a percentage is required (0-100), not %s" % text)
    return value


def _context(text: str) -> str:
    if text != "test":
        raise argparse.ArgumentTypeError('The only supported value is "test".')
    return text


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("li-cov", "coverage measured by lowimpact cover (pytest-cov's "
                                      "options, named --li-cov...)")
    group.addoption("--li-cov", action="append", default=[], nargs="?", const=True,
                    metavar="SOURCE", dest="li_cov_source",
                    help="measure this path or package (repeatable); without a value, what "
                    "the configuration says")
    group.addoption("--li-cov-report", action="append", default=[], type=_report_type,
                    metavar="TYPE", dest="li_cov_report",
                    help="term, term-missing (either with :skip-covered), annotate, html, xml, "
                    "json, lcov (with :DEST), subline; repeatable; '' for none.  Default: term")
    group.addoption("--li-cov-config", default=None, metavar="PATH", dest="li_cov_config",
                    help="coverage.py's configuration file (default: .coveragerc, setup.cfg, "
                    "tox.ini, pyproject.toml)")
    group.addoption("--li-cov-branch", action="store_true", default=None, dest="li_cov_branch",
                    help="measure branches too")
    group.addoption("--li-cov-fail-under", type=_percent, default=None, metavar="MIN",
                    dest="li_cov_fail_under", help="fail if the total coverage is below MIN")
    group.addoption("--li-cov-append", action="store_true", default=False, dest="li_cov_append",
                    help="add to the existing data instead of replacing it")
    group.addoption("--li-cov-context", type=_context, default=None, metavar="CONTEXT",
                    dest="li_cov_context",
                    help='dynamic contexts to record: "test" (pytest-cov\'s <nodeid>|setup, '
                    '|run and |teardown)')
    group.addoption("--no-li-cov-on-fail", action="store_true", default=False,
                    dest="no_li_cov_on_fail", help="no report when a test failed")
    group.addoption("--no-li-cov", action="store_true", default=False, dest="no_li_cov",
                    help="do not measure (overrides --li-cov)")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: List[str]) -> None:
    options = early_config.known_args_namespace
    if not options.li_cov_source or options.no_li_cov:
        return
    plugin = _Plugin(options)
    plugin.start()
    early_config.pluginmanager.register(plugin, "_li_cov")
    if options.li_cov_context == "test":
        early_config.pluginmanager.register(_TestContexts(plugin), "_li_cov_contexts")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_cover: disable coverage for this test.")


@pytest.fixture
def no_cover() -> None:
    """A test that uses this fixture runs unmeasured (pytest-cov's
    ``no_cover``)."""


class _Plugin:
    """One measured session."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        sources = options.li_cov_source
        self.source: Optional[List[str]] = None if True in sources else list(sources)
        self.rcfile: Any = options.li_cov_config or True
        reports = dict(options.li_cov_report) or {"term": None}
        reports.pop("", None)
        self.reports: Dict[str, Optional[str]] = reports
        self.measurement: Any = None
        self.data_file = ""
        self.total: Optional[float] = None
        self.fail_under: Optional[float] = options.li_cov_fail_under
        self.text = ""

    def start(self) -> None:
        from lowimpact.tools.cover import startup
        from lowimpact.tools.cover.measure import CoverError, Measurement, subline_path

        worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
        # An xdist worker started with `patch = subprocess` measures itself
        # from start-up (startup.py) and saves at exit: one measurement only.
        if worker and startup.process_measurement() is not None:
            return
        try:
            self.measurement = Measurement(source=self.source, branch=self.options.li_cov_branch,
                                           rcfile=self.rcfile, parallel=True)
        except CoverError as exc:
            raise pytest.UsageError("--li-cov: %s" % exc) from None
        cov = self.measurement.coverage
        self.data_file = os.path.abspath(cov.config.data_file)
        if self.fail_under is None and cov.config.fail_under:
            self.fail_under = cov.config.fail_under
        # (The controller of xdist workers erases, before they start.)
        if not self.options.li_cov_append and not worker:
            # As coverage.py's erase(): the data file, not parallel ones.
            for path in (self.data_file, subline_path(self.data_file)):
                if os.path.exists(path):
                    os.remove(path)
        try:
            self.measurement.start()
        except CoverError as exc:
            raise pytest.UsageError("--li-cov: %s" % exc) from None

    @property
    def measuring(self) -> Any:
        """The measurement of this process (started by the plugin, or at
        start-up in an xdist worker), or None."""
        if self.measurement is not None:
            return self.measurement
        from lowimpact.tools.cover import startup

        return startup.process_measurement()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        measurement = self.measuring
        if measurement is None or not (item.get_closest_marker("no_cover")
                                       or "no_cover" in getattr(item, "fixturenames", ())):
            yield
            return
        measurement.pause()
        try:
            yield
        finally:
            measurement.resume()

    def _combined(self):
        """coverage.py's Coverage on the data file, with this session's
        parallel files (and those of its subprocesses) combined into it."""
        import coverage
        from coverage.exceptions import NoDataError

        from lowimpact.tools.cover.subline import combine_files

        cov = coverage.Coverage(source=self.source, branch=self.options.li_cov_branch,
                                data_file=self.data_file, config_file=self.rcfile)
        if os.path.exists(self.data_file):
            cov.load()
        try:
            cov.combine(keep=False)
        except NoDataError:
            pass   # nothing measured: the report says so
        cov.save()
        combine_files(self.data_file, append=True, keep=False)
        return cov

    # Around the test loop: pytest_sessionfinish is too late to fail the
    # session (old-style wrapper: any pytest 7+).
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        yield
        if self.measurement is None:
            return   # measured from start-up, saved at exit
        failed = bool(session.testsfailed)
        worker = hasattr(session.config, "workerinput")
        if worker or session.config.pluginmanager.hasplugin("dsession"):
            # Under xdist a process may measure nothing of the source (the
            # controller runs no test): only the combined data may say so.
            self.measurement.coverage._warn_no_data = False
        self.measurement.stop()
        self.measurement.save()
        if worker:
            return   # the controller combines and reports
        cov = self._combined()
        if not (self.reports or self.fail_under is not None) or (
                failed and self.options.no_li_cov_on_fail):
            return
        import io

        from coverage.exceptions import CoverageException
        from coverage.results import display_covered, should_fail_under

        stream = io.StringIO()
        try:
            self.total = self._report(cov, stream)
        except CoverageException as exc:
            stream.write("lowimpact cover: could not report: %s\n" % exc)
            self.total = 0.0
        self.text = stream.getvalue()
        precision = cov.config.precision
        if (self.fail_under is not None and not session.config.option.collectonly
                and should_fail_under(self.total, self.fail_under, precision)):
            reporter = session.config.pluginmanager.getplugin("terminalreporter")
            reporter.write("\nERROR: Coverage failure: total of %s is less than fail-under=%s\n"
                           % (display_covered(self.total, precision), self.fail_under),
                           red=True, bold=True)
            session.testsfailed += 1   # pytest's exit status for failed tests

    def _report(self, cov, stream) -> float:
        with open(os.devnull, "w") as devnull:
            total = cov.report(ignore_errors=True, output_format="total", file=devnull)
        stream.write("coverage: platform %s, python %s\n\n" % (sys.platform, sys.version.split()[0]))
        for kind in _TERM:
            if kind in self.reports:
                cov.report(ignore_errors=True, file=stream, show_missing=kind == "term-missing",
                           skip_covered=self.reports[kind] == "skip-covered")
        dest = self.reports.get
        if "annotate" in self.reports:
            cov.annotate(ignore_errors=True, directory=dest("annotate"))
            stream.write("Coverage annotated source written %s\n"
                         % ("to dir %s" % dest("annotate") if dest("annotate") else "next to source"))
        if "html" in self.reports:
            cov.html_report(ignore_errors=True, directory=dest("html"))
            stream.write("Coverage HTML written to dir %s\n" % (dest("html") or cov.config.html_dir))
        for kind, write, default in (("xml", cov.xml_report, cov.config.xml_output),
                                     ("json", cov.json_report, cov.config.json_output),
                                     ("lcov", cov.lcov_report, cov.config.lcov_output)):
            if kind in self.reports:
                write(ignore_errors=True, outfile=dest(kind))
                stream.write("Coverage %s written to file %s\n" % (kind.upper(), dest(kind) or default))
        if "subline" in self.reports:
            from lowimpact.tools.cover.subline import analyse, format_text, load, subline_path

            path = subline_path(self.data_file)
            if os.path.exists(path):
                stream.write(format_text(analyse(load(path))))
            else:
                stream.write("No sub-line data (measure with --li-cov-branch)\n")
        return total

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.total is None:
            return
        terminalreporter.write_sep("=", "tests coverage (lowimpact)")
        terminalreporter.write(self.text)
        if self.fail_under:
            failed = self.total < self.fail_under
            terminalreporter.write(
                "%sRequired test coverage of %s%% %s. Total coverage: %.2f%%\n"
                % ("FAIL " if failed else "", self.fail_under,
                   "not reached" if failed else "reached", self.total),
                **({"red": True, "bold": True} if failed else {"green": True}))


class _TestContexts:
    """``--li-cov-context=test``: pytest-cov's contexts for each phase of a
    test (not switched while a ``no_cover`` test is paused, as pytest-cov,
    whose coverage is stopped then, does not)."""

    def __init__(self, plugin: _Plugin) -> None:
        self.plugin = plugin

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._switch(item, "setup")

    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self._switch(item, "run")

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self._switch(item, "teardown")

    def _switch(self, item: pytest.Item, when: str) -> None:
        measurement = self.plugin.measuring
        if measurement is not None and measurement.running and not measurement.paused:
            measurement.switch_context("%s|%s" % (item.nodeid, when))
