"""Build of the C engine.  Everything else is declared in pyproject.toml.

The engine's instrumentation back end depends on the interpreter's bytecode
format, so the sources compiled are chosen by the version being built for.
"""

import os
import sys
from glob import glob

from setuptools import Extension, setup

ENGINE = "src/engine"

# One instrumentation back end per bytecode format.
BACKENDS = {
    (3, 11): "backend311",
}


def engine_extension():
    backend = BACKENDS.get(sys.version_info[:2])
    if backend is None or sys.implementation.name != "cpython":
        return []
    sources = sorted(glob(os.path.join(ENGINE, "*.c")))
    sources += sorted(glob(os.path.join(ENGINE, backend, "*.c")))
    extra = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden", "-flto"]
    if os.environ.get("LOWIMPACT_STRICT"):
        extra.append("-Werror")
    if os.environ.get("LOWIMPACT_DEBUG"):
        extra += ["-O0", "-g", "-UNDEBUG", "-DLI_DEBUG"]
    if os.environ.get("LOWIMPACT_ASAN"):
        extra += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    return [
        Extension(
            "lowimpact._engine",
            sources=sources,
            include_dirs=[ENGINE, "src/lowimpact/include"],
            extra_compile_args=extra,
            extra_link_args=["-flto"] + (["-fsanitize=address"] if os.environ.get("LOWIMPACT_ASAN") else []),
        )
    ]


setup(ext_modules=engine_extension())
