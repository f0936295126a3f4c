"""Where milabox runs from: its version, the git commit of its own files, and this host's name.

Recorded in image labels, manifests, bundles and results packs, so every artefact says what made it.
"""

from __future__ import annotations

import functools
import socket
import subprocess

from milabox import __version__
from milabox.resources import INSTALL_ROOT


@functools.cache
def source_commit(*paths: str) -> str:
    """The git commit milabox runs from, with ``-dirty`` when files differ from it; ``unknown`` outside git.

    Args:
        paths: limit to the last commit that changed these paths (relative to the project). Image labels use
            this, so an image's id changes only when its own sources do and unrelated commits keep the cache.
    """
    git = ["git", "-C", str(INSTALL_ROOT)]
    try:
        head = subprocess.run([*git, "log", "-1", "--format=%H", "--", *paths] if paths else [*git, "rev-parse",
                              "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        dirty = subprocess.run([*git, "status", "--porcelain", "--", *paths], capture_output=True, text=True,
                               timeout=10, check=False).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def host_facts() -> dict[str, str]:
    """Host name and milabox version, as recorded in every manifest."""
    return {"host": socket.gethostname(), "milabox_version": __version__, "source_commit": source_commit()}
