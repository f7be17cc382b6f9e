"""coverage.py's side of a measured run, without importing ``coverage.control``.

``import coverage`` runs ``coverage/__init__.py``, which imports
``coverage.control`` and with it every reporter (html, xml, json, lcov,
annotate), coverage.py's collector and tracer cores and its multiprocessing
support: about a sixth of what an empty script's ``cover run`` costs.  A
measured run needs only the configuration, the file selection and the
data file.  :func:`coverage_for_run` imports the modules holding those from
the ``coverage`` package without running its ``__init__``, and gives a
:class:`RunCoverage`: the members of ``coverage.Coverage`` that
:class:`~lowimpact.tools.cover.measure.Measurement` uses, with their
meaning in coverage.py, made of the objects ``Coverage`` is made of.

The package is left in ``sys.modules`` with those submodules, and the first
use of a name it does not have yet (``Coverage``, ``__version__``...) runs
its ``__init__`` first, through a module ``__getattr__`` (PEP 562): a
program (or a report) that imports ``coverage`` gets the real package and
the same submodules, whatever it imports first.

The real ``coverage.Coverage`` is used instead whenever a run needs more
than this: ``coverage`` already imported, coverage.py plugins (they are
given the ``Coverage`` object), debug output, or a coverage.py whose
modules are not where these are.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from typing import Any, Dict, Optional

__all__ = ["RunCoverage", "coverage_for_run"]

#: The modules a measured run uses (with those they import): configuration,
#: file selection, data file, warnings, contexts.  They include what
#: coverage.py's modules import from the package (``from coverage import
#: env, files``, and ``__version__`` before 7.11, bound as its ``__init__``
#: binds it): any other name would run its ``__init__`` in the middle of
#: their import, which fails if that ``__init__`` imports them.
_RUN_MODULES = ("coverage.exceptions", "coverage.version", "coverage.env", "coverage.files",
                "coverage.config", "coverage.debug", "coverage.misc", "coverage.plugin_support",
                "coverage.disposition", "coverage.inorout", "coverage.sqldata",
                "coverage.context")

#: coverage.py's prefix for a configuration given as data (subprocesses).
_CONFIG_DATA_PREFIX = ":data:"

# Held while the package's __init__ runs: another thread using the package
# meanwhile waits for it; re-entrant, as the __init__ uses the package itself.
_init_lock = threading.RLock()


def _import_modules_only() -> bool:
    """Import :data:`_RUN_MODULES` of the ``coverage`` package and leave its
    ``__init__`` to the first use of a name it lacks; False when that is not
    possible: ``coverage`` is already imported, or not there, or not laid
    out as these modules expect (then nothing of it stays imported)."""
    if "coverage" in sys.modules:
        return False
    spec = importlib.machinery.PathFinder.find_spec("coverage")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    package = importlib.util.module_from_spec(spec)
    sys.modules["coverage"] = package
    try:
        for name in _RUN_MODULES:
            importlib.import_module(name)
    except Exception:
        for name in [n for n in sys.modules if n == "coverage" or n.startswith("coverage.")]:
            del sys.modules[name]
        return False
    package.__version__ = sys.modules["coverage.version"].__version__
    initialising = False

    def __getattr__(name: str) -> Any:
        nonlocal initialising
        with _init_lock:
            if initialising or package.__dict__.get("__getattr__") is not __getattr__:
                # (Inside the __init__ itself, or after it: a name it lacks.)
                if name in package.__dict__:
                    return package.__dict__[name]
                raise AttributeError("module 'coverage' has no attribute %r" % name)
            initialising = True
            try:
                spec.loader.exec_module(package)
                if package.__dict__.get("__getattr__") is __getattr__:
                    del package.__getattr__
            finally:
                initialising = False
        return getattr(package, name)

    package.__getattr__ = __getattr__
    return True


def coverage_for_run(**kwargs: Any) -> Any:
    """A :class:`RunCoverage` (or, when the run needs more, a real
    ``coverage.Coverage``) made with ``coverage.Coverage``'s *kwargs*.
    Raises ImportError without coverage.py, coverage.py's exceptions for a
    bad configuration."""
    if _import_modules_only():
        run_coverage = RunCoverage(**kwargs)
        if not (run_coverage.config.plugins or run_coverage.config.debug):
            return run_coverage
    import coverage

    return coverage.Coverage(**kwargs)


class RunCoverage:
    """What ``coverage.Coverage`` is for a measured run: its configuration
    read as ``Coverage()`` reads it, and the members ``Coverage.start()``
    and ``Coverage.save()`` use -- ``_init``, ``_init_data``,
    ``_post_init``, ``load``, ``_warn``, ``_post_save_work``,
    ``get_option``, ``_file_mapper``, ``_data``, ``_inorout`` -- for a
    configuration without plugins or debug output."""

    def __init__(self, *, data_file: Optional[str] = None, data_suffix: Any = None,
                 cover_pylib: Optional[bool] = None, branch: Optional[bool] = None,
                 config_file: Any = True, source: Any = None, omit: Any = None,
                 include: Any = None, concurrency: Any = None, check_preimported: bool = False,
                 messages: bool = False, context: Optional[str] = None) -> None:
        from coverage.config import CoverageConfig, read_coverage_config
        from coverage.debug import NoDebugging
        from coverage.files import abs_file
        from coverage.plugin_support import Plugins

        self.config = CoverageConfig()   # (what _warn reads while the real one is read)
        self._warnings: list = []
        self._no_warn_slugs: set = set()
        self._warn_no_data = True
        self._warn_unimported_source = True
        self._warn_preimported_source = check_preimported
        self._messages = messages
        self._data_suffix_specified = data_suffix
        self._debug = NoDebugging()
        self._plugins = Plugins()
        self._data = None
        self._inorout = None
        self._file_mapper = abs_file
        self._inited = False
        self._inited_for_start = False
        if isinstance(config_file, str) and config_file.startswith(_CONFIG_DATA_PREFIX):
            self.config = CoverageConfig.deserialize(config_file[len(_CONFIG_DATA_PREFIX):])
            return
        if not isinstance(config_file, bool):
            config_file = os.fspath(config_file)
        self.config = read_coverage_config(
            config_file=config_file, warn=self._warn,
            data_file=None if data_file is None else os.fspath(data_file),
            cover_pylib=cover_pylib, branch=branch,
            parallel=data_suffix if data_suffix is None else bool(data_suffix),
            source=source, run_omit=omit, run_include=include, report_omit=omit,
            report_include=include, concurrency=concurrency, context=context,
        )

    def get_option(self, option_name: str) -> Any:
        return self.config.get_option(option_name)

    def _init(self) -> None:
        if self._inited:
            return
        self._inited = True
        from coverage.files import relative_filename, set_relative_directory

        if "multiprocessing" in (self.config.concurrency or ()):
            # (Its subprocesses write parallel files, and so does this one.)
            self.config.parallel = True
        set_relative_directory()
        if self.config.relative_files:
            self._file_mapper = relative_filename

    def _post_init(self) -> None:
        """(Coverage's writes the debug output this configuration has none of.)"""

    def _init_data(self, suffix: Any) -> None:
        if self._data is not None:
            return
        from coverage.misc import ensure_dir_for_file
        from coverage.sqldata import CoverageData

        # (Its second argument, the purpose for the error message, is 7.11's.)
        if ensure_dir_for_file.__code__.co_argcount > 1:
            ensure_dir_for_file(self.config.data_file, "data file")
        else:
            ensure_dir_for_file(self.config.data_file)
        self._data = CoverageData(basename=self.config.data_file, suffix=suffix,
                                  warn=self._warn, debug=self._debug)

    def load(self) -> None:
        self._init()
        should_skip = self.config.parallel and not os.path.exists(self.config.data_file)
        if not should_skip:
            self._init_data(suffix=None)
            self._data.read()

    def _warn(self, msg: str, slug: Optional[str] = None, once: bool = False) -> None:
        """coverage.py's warning: a CoverageWarning, unless its slug is in
        ``[run] disable_warnings`` (or was said once already)."""
        import warnings

        from coverage.exceptions import CoverageWarning
        from coverage.version import __url__

        if not self._no_warn_slugs:
            self._no_warn_slugs = set(self.config.disable_warnings)
        if slug in self._no_warn_slugs:
            return
        self._warnings.append(msg)
        if slug:
            msg = "%s (%s); see %s/messages.html#warning-%s" % (msg, slug, __url__, slug)
        warnings.warn(msg, category=CoverageWarning, stacklevel=2)
        if once:
            self._no_warn_slugs.add(slug)

    def _post_save_work(self) -> None:
        """What ``Coverage`` does after collecting: warn of sources never
        imported, of no data, and add the files that could have run and did
        not (0% in the reports)."""
        if self._warn_unimported_source:
            self._inorout.warn_unimported_source()
        if not self._data and self._warn_no_data:
            self._warn("No data was collected.", slug="no-data-collected")
        file_paths: Dict[str, list] = {}
        for file_path, plugin_name in self._inorout.find_possibly_unexecuted_files():
            file_paths.setdefault(plugin_name, []).append(self._file_mapper(file_path))
        for plugin_name, paths in file_paths.items():
            self._data.touch_files(paths, plugin_name)
