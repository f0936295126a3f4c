"""Where builds get Python packages: index, wheelhouse and CA bundle, found in pip's own configuration.

Restricted networks are the normal case for vendor labs: a TLS-intercepting proxy (its CA bundle),
an internal index, or no index at all (a wheelhouse). milabox reads what pip on the host is already
configured with, so a machine where ``pip install`` works needs no extra settings to build images. Likewise the
Debian mirror a locally made base image is bootstrapped from comes from the host's apt sources
(:func:`debian_mirror`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from milabox.definitions.vendors import Vendor
from milabox.errors import ConfigError

# pip's own built-in default index (and uv's): used only where pip's configuration names none, so the image's pip
# behaves as an unconfigured pip would.
PYPI = "https://pypi.org/simple"
ETC_APT = Path("/etc/apt")
_MIRROR_SCHEMES = ("http://", "https://", "file:/")  # what debootstrap can fetch a suite from
# deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] URI SUITE [COMPONENT...]
_DEB_LINE = re.compile(r"^deb\s+(\[[^\]]*\]\s*)?(?P<uri>\S+)\s+(?P<suite>\S+)")


@dataclass(frozen=True)
class PackageSources:
    """Package sources for image builds.

    Attributes:
        index_url: main index (default PyPI, pip's own default).
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


# pip's settings and the uv environment variable that means the same (uv reads no pip configuration:
# https://docs.astral.sh/uv/pip/compatibility/); pip's cert is a CA bundle, which uv takes from SSL_CERT_FILE.
_PIP_TO_UV = {"index-url": "UV_INDEX_URL", "extra-index-url": "UV_EXTRA_INDEX_URL", "find-links": "UV_FIND_LINKS",
              "cert": "SSL_CERT_FILE", "constraint": "UV_CONSTRAINT"}


def uv_environment(config: dict[str, str] | None = None) -> str:
    """pip's configuration as uv environment variables, for the host venv ``make venv`` installs with uv.

    Args:
        config: pip's settings (default: this host's, :func:`pip_config`).

    Returns:
        ``NAME=value`` assignments, shell-quoted and space-separated (empty where pip has no such settings).
    """
    config = pip_config() if config is None else config
    pairs = [f"{uv}={shlex.quote(config[pip])}" for pip, uv in _PIP_TO_UV.items() if config.get(pip)]
    # pip picks the best version across all its indexes; uv by default takes the first index that has a package
    # at all, so an extra index holding an older version would win (a different ruff, then a different lint).
    return " ".join([*pairs, "UV_INDEX_STRATEGY=unsafe-best-match"])


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


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of the host's apt sources: one URI and the suites it serves.

    Attributes:
        uri: the archive's URI as written, e.g. ``http://deb.debian.org/debian``.
        suites: the suites the entry names, e.g. ``("bookworm", "bookworm-updates")``.
        path: the file it is written in.
    """

    uri: str
    suites: tuple[str, ...]
    path: Path


def _one_line_entries(text: str, path: Path) -> list[AptSource]:
    """``deb [options] URI SUITE [COMPONENT...]`` lines of a ``.list`` file (``deb-src`` and comments skipped)."""
    found = []
    for line in text.splitlines():
        m = _DEB_LINE.match(line.split("#", 1)[0].strip())
        if m:
            found.append(AptSource(m["uri"], (m["suite"],), path))
    return found


def _deb822_entries(text: str, path: Path) -> list[AptSource]:
    """Stanzas of a deb822 ``.sources`` file whose ``Types`` include ``deb`` and that are not ``Enabled: no``."""
    stanzas: list[dict[str, str]] = [{}]
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanzas[-1]:
                stanzas.append({})
            key = ""
        elif line[0] in " \t":
            if key:  # a continuation line of the field above
                stanzas[-1][key] += " " + line.strip().removeprefix(".")
        else:
            name, sep, value = line.partition(":")
            key = name.strip().lower() if sep else ""
            if key:
                stanzas[-1][key] = value.strip()
    found = []
    for stanza in stanzas:
        if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        suites = tuple(stanza.get("suites", "").split())
        found += [AptSource(uri, suites, path) for uri in stanza.get("uris", "").split()]
    return found


def apt_sources(etc_apt: Path = ETC_APT) -> list[AptSource]:
    """The host's binary (``deb``) apt sources, in the order apt reads them.

    Args:
        etc_apt: apt's configuration folder (default ``/etc/apt``): its ``sources.list``, then the ``*.list`` and
            deb822 ``*.sources`` files of ``sources.list.d/`` by name. Missing or unreadable files are skipped.

    Returns:
        The entries (an empty list where the host has no apt sources at all).
    """
    folder = Path(etc_apt) / "sources.list.d"
    files = [Path(etc_apt) / "sources.list"]
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources"))
    found: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found += _deb822_entries(text, path) if path.suffix == ".sources" else _one_line_entries(text, path)
    return found


def debian_mirror(suite: str, etc_apt: Path = ETC_APT) -> AptSource | None:
    """The first mirror of the host's apt sources that serves a suite, for debootstrap.

    An entry naming the suite itself (``bookworm``) wins; else the first naming one of its family
    (``bookworm-updates``, ``bookworm-backports``), but not ``<suite>-security``, whose archive does not hold
    the release itself. Only ``http``, ``https`` and ``file`` URIs count (what debootstrap fetches from).

    Args:
        suite: the Debian suite, e.g. ``bookworm``.
        etc_apt: apt's configuration folder (default ``/etc/apt``).

    Returns:
        The entry, or None where no source serves that suite (no apt sources, or another distribution's).
    """
    usable = [s for s in apt_sources(etc_apt) if s.uri.startswith(_MIRROR_SCHEMES)]
    exact = [s for s in usable if suite in s.suites]
    family = [s for s in usable
              if any(x.startswith(f"{suite}-") and x != f"{suite}-security" for x in s.suites)]
    return (exact or family or [None])[0]
