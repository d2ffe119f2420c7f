# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""pip install --no-build-isolation ./python

Builds the same C++ sources as Bazel (python/src, ringbuf/, transport/) into
shmlink/_shmlink*.so with setuptools; no network needed (pybind11 from Debian's
python3-pybind11 and pybind11-dev, Python headers from python3-dev, OpenSSL from
libssl-dev). Build isolation would fetch setuptools from an index: pass
--no-build-isolation (see the README's "Use it in your project").
"""
import glob
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rel(pattern):
    # Relative paths (from this directory): setuptools then keeps object files under build/.
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(ROOT, pattern)))


def stage_headers():
    # The sources include <shmlink/x.h>, as users do: lay the headers out that way.
    staged = os.path.join(HERE, "build", "include", "shmlink")
    os.makedirs(staged, exist_ok=True)
    for pattern in ("ringbuf/*.h", "transport/*.h", "python/include/*.h"):
        for header in glob.glob(os.path.join(ROOT, pattern)):
            shutil.copyfile(header, os.path.join(staged, os.path.basename(header)))
    return os.path.dirname(staged)


def version():
    # One version for the C++ library and the Python package: the VERSION file.
    with open(os.path.join(ROOT, "VERSION"), encoding="ascii") as f:
        return f.read().strip()


def pybind11_include():
    # Debian's python3-pybind11 (or any pybind11 the interpreter sees) says where its
    # headers are; no path is assumed.
    try:
        import pybind11
    except ImportError as e:
        raise SystemExit(
            "shmlink: pybind11 is not importable by this Python "
            "(apt-get install python3-pybind11, or use a venv with --system-site-packages)"
        ) from e
    return pybind11.get_include()


def write_version_module():
    # shmlink.__version__ comes from the same VERSION file as the C++ library's.
    with open(os.path.join(HERE, "shmlink", "_version.py"), "w", encoding="ascii") as f:
        f.write("# Generated from VERSION by setup.py.\n__version__ = %r\n" % version())


class ParallelBuildExt(build_ext):
    # Some 40 C++ files: compile them on every core (pip passes no -j of its own).
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1


os.chdir(HERE)
write_version_module()
# scripts/install.sh passes the libshmlink.a it has just built (position-independent) so
# the library is not compiled twice; a plain pip install compiles everything.
static_lib = os.environ.get("SHMLINK_STATIC_LIB")
sources = rel("python/src/*.cc")
if not static_lib:
    sources += rel("ringbuf/*.cc") + rel("transport/*.cc")

setup(
    name="shmlink",
    version=version(),
    description="Zero-copy IPC over POSIX shared memory with multiprocessing's API",
    packages=["shmlink"],
    package_data={"shmlink": ["*.pyi", "py.typed"]},
    ext_modules=[
        Extension(
            "shmlink._shmlink",
            sources=sources,
            include_dirs=[ROOT, stage_headers(), pybind11_include()],
            extra_compile_args=["-std=c++20", "-fvisibility=hidden", "-O2"],
            extra_objects=[static_lib] if static_lib else [],
            libraries=["rt", "crypto", "pthread"],
            language="c++",
        )
    ],
    cmdclass={"build_ext": ParallelBuildExt},
    python_requires=">=3.10",
    zip_safe=False,
)
