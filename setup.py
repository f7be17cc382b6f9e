"""Build of the C extensions.  Everything else is declared in pyproject.toml.

lowimpact._engine (the engine, on interpreters without sys.monitoring) has one
instrumentation back end per bytecode format, and lowimpact._capi (the C API,
lowimpact.h) one extension side per kind of interpreter: the sources compiled
are chosen by the version being built for.  lowimpact._stack (the stack
reader) is the same on every version 3.9+.
"""

import os
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ENGINE = "src/engine"
STACK = "src/stack"

# One instrumentation back end per bytecode format, with the directory of
# its version-specific files where it serves more than one version (3.9 and
# 3.10 share the block-stack back end).
BACKENDS = {
    (3, 9): ("backend310", "v39"),
    (3, 10): ("backend310", "v310"),
    (3, 11): ("backend311", None),
}


# The extension side of the C API, per interpreter (src/capi/capi.h).
CAPI_EXTENSION_SIDE = {
    (3, 9): "ext_engine.c",
    (3, 10): "ext_engine.c",
    (3, 11): "ext_engine.c",
    (3, 12): "ext_312.c",
}

# Where native LINE leaves checks inside lines that a collector quiets
# (src/cover/quiet.h), the file that knows that interpreter's data.
QUIET_LINES = {
    (3, 12): "quiet_312.c",
    (3, 13): "quiet_313.c",
}


def compile_args():
    extra = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden", "-flto=auto"]
    if os.environ.get("LOWIMPACT_STRICT"):
        extra.append("-Werror")
    if os.environ.get("LOWIMPACT_DEBUG"):
        extra += ["-O0", "-g", "-UNDEBUG", "-DLI_DEBUG"]
    if os.environ.get("LOWIMPACT_ASAN"):
        extra += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    return extra


def link_args():
    return ["-flto=auto"] + (["-fsanitize=address"] if os.environ.get("LOWIMPACT_ASAN") else [])


def headers(*directories):
    """Headers the sources include: a change to one rebuilds the extension."""
    return sorted(h for d in directories for h in glob(os.path.join(d, "*.h")))


def stack_reader():
    """lowimpact._stack, the out-of-process stack reader (Linux): the same
    sources on every version, since the version it reads is the target's."""
    if not sys.platform.startswith("linux"):
        return []
    return [Extension("lowimpact._stack", sources=sorted(glob(os.path.join(STACK, "*.c"))),
                      include_dirs=[STACK],
                      depends=headers(STACK, os.path.join(STACK, "layouts")),
                      extra_compile_args=compile_args(), extra_link_args=link_args())]


def extensions():
    version = sys.version_info[:2]
    if sys.implementation.name != "cpython" or version < (3, 9):
        return []
    include = [ENGINE, "src/shared", "src/lowimpact/include"]
    result = []
    if version in BACKENDS:
        backend, variant = BACKENDS[version]
        backend_dirs = [os.path.join(ENGINE, backend)]
        if variant is not None:
            backend_dirs.append(os.path.join(ENGINE, backend, variant))
        sources = sorted(glob(os.path.join(ENGINE, "*.c")))
        for directory in backend_dirs:
            sources += sorted(glob(os.path.join(directory, "*.c")))
        result.append(Extension("lowimpact._engine", sources=sources,
                                include_dirs=include + backend_dirs,
                                depends=headers(ENGINE, *backend_dirs, *include[1:]),
                                extra_compile_args=compile_args(),
                                extra_link_args=link_args()))
    side = CAPI_EXTENSION_SIDE.get(version, "ext_none.c")
    result.append(Extension("lowimpact._capi",
                            sources=["src/capi/capi.c", os.path.join("src/capi", side)],
                            include_dirs=["src/capi", "src/shared", "src/lowimpact/include"],
                            depends=headers("src/capi", "src/shared", "src/lowimpact/include"),
                            extra_compile_args=compile_args(), extra_link_args=link_args()))
    # The measurement core of `lowimpact cover`, a client of the C API's tool
    # side, with what it may change of the interpreter's LINE instrumentation
    # (src/cover/quiet.h) per interpreter.
    quiet = QUIET_LINES.get(version, "quiet_none.c")
    result.append(Extension("lowimpact._cover",
                            sources=["src/cover/cover.c", "src/cover/codewalk.c",
                                     "src/cover/locations.c", os.path.join("src/cover", quiet)],
                            include_dirs=["src/cover", "src/shared", "src/lowimpact/include"],
                            depends=headers("src/cover", "src/shared", "src/lowimpact/include"),
                            extra_compile_args=compile_args(), extra_link_args=link_args()))
    # The measurement core of `lowimpact profile`, the same way.
    result.append(Extension("lowimpact._profile", sources=["src/profile/profile.c"],
                            include_dirs=["src/shared", "src/lowimpact/include"],
                            depends=headers("src/shared", "src/lowimpact/include"),
                            extra_compile_args=compile_args(), extra_link_args=link_args()))
    # The C callbacks of `lowimpact debug`'s core, the same way, with the
    # one bytecode fact they need (src/debug/backward.h) per format.
    backward = "backward_311.c" if version == (3, 11) else "backward_none.c"
    result.append(Extension("lowimpact._debug",
                            sources=["src/debug/debug.c", os.path.join("src/debug", backward)],
                            include_dirs=["src/debug", "src/shared", "src/lowimpact/include"],
                            depends=headers("src/debug", "src/shared", "src/lowimpact/include"),
                            extra_compile_args=compile_args(), extra_link_args=link_args()))
    # What tools/target.py needs of C to run a program as python does.
    result.append(Extension("lowimpact._target", sources=["src/target/target.c"],
                            extra_compile_args=compile_args(), extra_link_args=link_args()))
    return result + stack_reader()


# Start-up hooks that site runs from .pth files, each doing nothing unless its
# environment variable is set: the opt-in of `lowimpact debugpy` for launches
# one does not control (VS Code's, LOWIMPACT_DEBUGPY), and lowimpact cover's
# measuring of a measured program's subprocesses (LOWIMPACT_COVER_PROCESS,
# src/lowimpact/tools/cover/startup.py).
PTH_FILES = ["src/lowimpact-debugpy.pth", "src/cover/lowimpact_cover.pth"]


class BuildPyWithPth(build_py):
    """build_py that also puts the .pth files at the top of the build, which
    the wheel installs into site-packages itself (data_files would put them
    under the environment's prefix, where site does not look)."""

    def _pth_outputs(self):
        return [os.path.join(self.build_lib, os.path.basename(p)) for p in PTH_FILES]

    def run(self):
        super().run()
        for source, target in zip(PTH_FILES, self._pth_outputs()):
            self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + self._pth_outputs()


# (pyproject.toml says where the packages are, but setuptools reads that only
# from 61 on; an older one, as 3.9's, would build in place into ./lowimpact.)
setup(ext_modules=extensions(), package_dir={"": "src"}, cmdclass={"build_py": BuildPyWithPth})
