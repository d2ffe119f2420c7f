# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink's version, in one place (setup.py reads it from here)."""
__version__ = "0.2.0"
