"""Where milabox's own files are: the data it ships inside its package, read through importlib.resources.

Templates, vendor files and the bundled benchmarks are package data, so a wheel installed outside the
checkout finds them exactly as a checkout does (setuptools installs package data as plain files).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def package_path(*parts: str) -> Path:
    """A folder or file inside the installed ``milabox`` package, e.g. ``package_path("vendors")``."""
    return Path(str(importlib.resources.files("milabox").joinpath(*parts)))


def runtime_package() -> Path:
    """The folder of the in-container runtime (``milabox_runtime``), copied into every runtime image."""
    return Path(str(importlib.resources.files("milabox_runtime")))


#: The folder that holds the ``milabox`` package: the checkout's root (a git work tree) or site-packages.
INSTALL_ROOT = package_path().parent
