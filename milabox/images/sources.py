"""Where builds get Python packages: index, wheelhouse and CA bundle, found in pip's own configuration.

Restricted networks are the normal case for vendor labs: a TLS-intercepting proxy (its CA bundle),
an internal index, or no index at all (a wheelhouse). milabox reads what pip on the host is already
configured with, so a machine where ``pip install`` works needs no extra settings to build images.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from milabox.definitions.vendors import Vendor
from milabox.errors import ConfigError

PYPI = "https://pypi.org/simple"


@dataclass(frozen=True)
class PackageSources:
    """Package sources for image builds.

    Attributes:
        index_url: main index (default PyPI).
        extra_index_urls: more indexes (``file://`` ones are host-only and skipped).
        wheelhouse: a local folder of wheels copied into the build (e.g. a CPU torch wheel), or None.
        ca_bundle: a CA bundle pip inside the build trusts (TLS-intercepting proxies), or None.
        network_mode: networking of build steps (``host`` by default: works with and without a bridge).
    """

    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    wheelhouse: Path | None = None
    ca_bundle: Path | None = None
    network_mode: str = "host"


def pip_config() -> dict[str, str]:
    """pip's effective configuration on this host (``pip config list``), keys without their scope."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    config: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            # Later lines (environment variables) override earlier ones (files), as in pip.
            config[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    return config


def discover(index_url: str | None = None, wheelhouse: str | None = None, ca_bundle: str | None = None,
             network_mode: str | None = None) -> PackageSources:
    """Combine explicit choices with pip's configuration (explicit wins).

    Args:
        index_url: ``--index-url``; else pip's ``index-url``; else PyPI.
        wheelhouse: ``--wheelhouse``; else pip's first local ``find-links`` folder.
        ca_bundle: ``--ca-bundle``; else pip's ``cert``.
        network_mode: ``--build-network``; else ``host``.

    Returns:
        The sources.

    Raises:
        ConfigError: an explicit wheelhouse or CA bundle does not exist.
    """
    pip = pip_config()
    extra = tuple(u for u in pip.get("extra-index-url", "").split() if u.startswith(("http://", "https://")))
    found_links = [p for p in pip.get("find-links", "").split() if os.path.isdir(p.removeprefix("file://"))]
    if wheelhouse is not None and not os.path.isdir(wheelhouse):
        raise ConfigError(f"--wheelhouse {wheelhouse}: no such folder")
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise ConfigError(f"--ca-bundle {ca_bundle}: no such file")
    house = wheelhouse or (found_links[0].removeprefix("file://") if found_links else None)
    cert = ca_bundle or (pip.get("cert") if os.path.isfile(pip.get("cert", "")) else None)
    index = index_url or pip.get("index-url") or PYPI
    if not index.startswith(("http://", "https://")):
        index = PYPI  # a file:// index exists only on this host
    return PackageSources(index_url=index, extra_index_urls=extra, wheelhouse=Path(house) if house else None,
                          ca_bundle=Path(cert) if cert else None, network_mode=network_mode or "host")


def torch_wheels(sources: PackageSources, vendor: Vendor) -> list[Path]:
    """Wheels in the wheelhouse that are exactly the vendor's torch version (e.g. ``torch-2.13.0+cpu-...whl``)."""
    if sources.wheelhouse is None:
        return []
    pattern = re.compile(rf"^torch-{re.escape(vendor.torch_version)}-.*\.whl$")
    return sorted(p for p in sources.wheelhouse.iterdir() if pattern.match(p.name))
