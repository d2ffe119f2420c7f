# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""pip install --no-build-isolation ./python

Builds the same C++ sources as Bazel (python/src, ringbuf/, transport/) into
shmlink/_shmlink*.so with setuptools; no network needed (pybind11 headers from Debian's
pybind11-dev, Python headers from python3-dev, OpenSSL from libssl-dev).
"""
import glob
import os
import shutil

from setuptools import Extension, setup

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


os.chdir(HERE)
sources = rel("python/src/*.cc") + rel("ringbuf/*.cc") + rel("transport/*.cc")

setup(
    name="shmlink",
    version="0.1.0",
    description="Zero-copy IPC over POSIX shared memory with multiprocessing's API",
    packages=["shmlink"],
    package_data={"shmlink": ["*.pyi", "py.typed"]},
    ext_modules=[
        Extension(
            "shmlink._shmlink",
            sources=sources,
            include_dirs=[ROOT, stage_headers(), "/usr/include/pybind11"],
            extra_compile_args=["-std=c++20", "-fvisibility=hidden", "-O2"],
            libraries=["rt", "crypto", "pthread"],
            language="c++",
        )
    ],
    python_requires=">=3.10",
    zip_safe=False,
)
