"""``lowimpact cover``: coverage.py's data, configuration and reports, measured
by a C core on ``sys.monitoring`` (lowimpact's engine on 3.11).

- :mod:`~lowimpact.tools.cover.measure`: :class:`Measurement`, one measured run;
- :mod:`~lowimpact.tools.cover.beside`: ``cover run`` with coverage.py in a
  process beside the program;
- :mod:`~lowimpact.tools.cover.arcs`: branch offsets to coverage.py's line arcs;
- :mod:`~lowimpact.tools.cover.subline`: branches inside lines;
- :mod:`~lowimpact.tools.cover.cli`: ``python -m lowimpact cover``.
"""


class CoverError(Exception):
    """A problem the user can fix (configuration, options, environment)."""


def core():
    """The C core, :mod:`lowimpact._cover` (a :class:`CoverError` where it
    cannot be imported)."""
    try:
        from lowimpact import _cover
    except ImportError as exc:
        import sys

        raise CoverError(
            "lowimpact cover needs CPython 3.9 or newer (this is %d.%d): %s"
            % (sys.version_info[0], sys.version_info[1], exc)
        ) from None
    return _cover
