"""Tools built on :mod:`lowimpact.monitoring`, each usable from Python and from
``python -m lowimpact <tool>``.

- :mod:`lowimpact.tools.target`: run a script or module the way ``python``
  does, and tell its own code from the standard library's.
- :mod:`lowimpact.tools.trace`: print every event a program produces.
- :mod:`lowimpact.tools.stack`: every thread's stack in another process,
  read from outside (``lowimpact._stack``).
- :mod:`lowimpact.tools.sample`: a sampling profiler on that reader.
- :mod:`lowimpact.tools.debugpy`: debugpy (VS Code's debugger) with its
  ``sys.monitoring`` tracer on 3.11.
"""
