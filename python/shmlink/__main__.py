# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""python3 -m shmlink list|inspect|watch|clean ... : runs the `shmlink` command.

The command is a C++ program (list, inspect, watch and clean shmlink segments; see
`shmlink --help` and docs/operations.md). This module finds it and replaces the Python
process with it, so arguments, output, exit status and Ctrl-C behave exactly as the
command's own. Where it looks, in order:
  1. $SHMLINK_CLI (a path to the binary);
  2. next to this package: shmlink/bin/shmlink, or the Bazel output tree's cli/shmlink
     (bazel-bin/python/shmlink -> bazel-bin/cli/shmlink);
  3. `shmlink` on $PATH.
"""
import os
import shutil
import sys


def find_cli():
    """Path of the shmlink command, or None."""
    env = os.environ.get("SHMLINK_CLI")
    if env:
        return env if os.access(env, os.X_OK) else None
    import shmlink  # noqa: F401  (its __path__ spans the source and build trees)
    for entry in shmlink.__path__:
        for cand in (os.path.join(entry, "bin", "shmlink"),
                     os.path.join(entry, "..", "..", "cli", "shmlink")):
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return os.path.abspath(cand)
    return shutil.which("shmlink")


def main(argv):
    cli = find_cli()
    if cli is None:
        where = os.environ.get("SHMLINK_CLI")
        sys.stderr.write(
            ("shmlink: SHMLINK_CLI=%s is not an executable file\n" % where) if where else
            "shmlink: the `shmlink` command was not found. Build it with "
            "`bazel build //cli:shmlink` and put bazel-bin/cli on PATH, or set SHMLINK_CLI "
            "to its path.\n")
        return 127
    os.execv(cli, [cli] + argv)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
