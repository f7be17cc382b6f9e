"""Tools built on :mod:`lowimpact.monitoring`, each usable from Python and from
``python -m lowimpact <tool>``.

- :mod:`lowimpact.tools.target`: run a script or module the way ``python``
  does, and tell its own code from the standard library's.
- :mod:`lowimpact.tools.trace`: print every event a program produces.
"""
