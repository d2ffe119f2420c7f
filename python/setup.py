"""pip install --no-build-isolation ./python

Builds the same C++ sources as Bazel (python/src, ringbuf/, transport/) into
shmlink/_shmlink*.so with setuptools; no network needed (pybind11 headers from Debian's
pybind11-dev, Python headers from python3-dev, OpenSSL from libssl-dev).
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rel(pattern):
    # Relative paths (from this directory): setuptools then keeps object files under build/.
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(ROOT, pattern)))


os.chdir(HERE)
sources = rel("python/src/*.cc") + rel("ringbuf/*.cc") + rel("transport/*.cc")
version = {}
with open(os.path.join(HERE, "shmlink", "_version.py")) as f:
    exec(f.read(), version)  # the one place the version is defined

setup(
    name="shmlink",
    version=version["__version__"],
    description="Zero-copy IPC over POSIX shared memory with multiprocessing's API",
    packages=["shmlink"],
    package_data={"shmlink": ["*.pyi", "py.typed"]},
    ext_modules=[
        Extension(
            "shmlink._shmlink",
            sources=sources,
            include_dirs=[ROOT, "/usr/include/pybind11"],
            extra_compile_args=["-std=c++20", "-fvisibility=hidden", "-O2"],
            libraries=["rt", "crypto", "pthread"],
            language="c++",
        )
    ],
    python_requires=">=3.10",
    zip_safe=False,
)
