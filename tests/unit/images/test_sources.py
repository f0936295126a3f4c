"""Where builds get packages from: pip's configuration picks the index, the host's apt sources the Debian mirror."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from milabox.definitions.vendors import all_vendors
from milabox.errors import ConfigError, MilaboxError
from milabox.images import base, sources
from milabox.images.base import debootstrap_mirror
from milabox.images.sources import PYPI, AptSource, apt_sources, debian_mirror, discover

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.internal/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.internal/debian-security
Suites: bookworm-security
Components: main
"""


def _etc_apt(tmp_path: Path, sources_list: str | None = None, **parts: str) -> Path:
    """An apt configuration folder: ``sources.list`` (if given) and ``sources.list.d/<name>`` files."""
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (etc / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (etc / "sources.list.d" / name.replace("__", ".")).write_text(text)
    return etc


def test_one_line_entries_with_options_comments_and_deb_src(tmp_path):
    etc = _etc_apt(tmp_path, """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://one.example/debian bookworm main
deb [ arch=amd64 ] http://two.example/debian bookworm-updates main  # trailing comment
deb\thttp://three.example/debian\tbookworm\tmain contrib

deb http://four.example/debian
""")
    assert apt_sources(etc) == [
        AptSource("http://one.example/debian", ("bookworm",), etc / "sources.list"),
        AptSource("http://two.example/debian", ("bookworm-updates",), etc / "sources.list"),
        AptSource("http://three.example/debian", ("bookworm",), etc / "sources.list"),
    ]


def test_deb822_stanzas_types_enabled_continuations_and_comments(tmp_path):
    etc = _etc_apt(tmp_path, debian__sources=DEBIAN_SOURCES, other__sources="""\
Types: deb-src
URIs: http://src-only.example/debian
Suites: bookworm

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm

types: deb deb-src
uris: http://a.example/debian
  http://b.example/debian
suites:
 trixie
 trixie-updates
""")
    debian, other = etc / "sources.list.d" / "debian.sources", etc / "sources.list.d" / "other.sources"
    assert apt_sources(etc) == [
        AptSource("http://mirror.example.internal/debian", ("bookworm", "bookworm-updates"), debian),
        AptSource("http://mirror.example.internal/debian-security", ("bookworm-security",), debian),
        AptSource("http://a.example/debian", ("trixie", "trixie-updates"), other),
        AptSource("http://b.example/debian", ("trixie", "trixie-updates"), other),
    ]


def test_files_are_read_in_apt_order_and_other_suffixes_ignored(tmp_path):
    etc = _etc_apt(tmp_path, "deb http://main.example/debian bookworm main\n",
                   b__list="deb http://b.example/debian bookworm main\n",
                   a__sources="Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\n",
                   c__list__disabled="deb http://c.example/debian bookworm main\n",
                   d__list__save="deb http://d.example/debian bookworm main\n")
    assert [s.uri for s in apt_sources(etc)] == ["http://main.example/debian", "http://a.example/debian",
                                                  "http://b.example/debian"]


def test_no_apt_configuration_at_all(tmp_path):
    assert apt_sources(tmp_path / "nothing") == []
    assert debian_mirror("bookworm", tmp_path / "nothing") is None
    assert apt_sources(_etc_apt(tmp_path)) == []


def test_mirror_is_the_first_entry_serving_the_suite(tmp_path):
    etc = _etc_apt(tmp_path, """\
deb http://security.example/debian-security bookworm-security main
deb https://packages.example/apt cloud-sdk-bookworm main
deb http://ubuntu.example/ubuntu noble main
deb mirror+file:/etc/apt/mirrors.txt bookworm main
deb http://updates.example/debian bookworm-updates main
deb http://exact.example/debian bookworm main
""")
    assert debian_mirror("bookworm", etc).uri == "http://exact.example/debian"  # the suite itself wins
    (etc / "sources.list").write_text("deb http://security.example/debian-security bookworm-security main\n"
                                      "deb http://updates.example/debian bookworm-updates main\n")
    assert debian_mirror("bookworm", etc).uri == "http://updates.example/debian"  # else its family, not security
    assert debian_mirror("trixie", etc) is None  # another release's sources serve no trixie


def test_the_vendor_files_mirror_wins_then_the_host_apt_sources_then_a_one_line_error(tmp_path):
    cpu = all_vendors()["cpu"]
    recipe = cpu.local_base
    assert recipe is not None and recipe.mirror == ""  # the cpu vendor leaves the mirror to the host
    etc = _etc_apt(tmp_path, debian__sources=DEBIAN_SOURCES)
    mirror, origin = debootstrap_mirror(cpu, recipe, etc)
    assert mirror == "http://mirror.example.internal/debian" and "debian.sources" in origin
    explicit = dataclasses.replace(recipe, mirror="http://vendor.example/debian")
    mirror, origin = debootstrap_mirror(cpu, explicit, etc)  # an explicit choice beats what the host has
    assert mirror == "http://vendor.example/debian" and "[local_base] mirror" in origin and str(cpu.path) in origin
    with pytest.raises(ConfigError, match=r"set `\[local_base\] mirror` in .*cpu\.toml") as err:
        debootstrap_mirror(cpu, recipe, tmp_path / "none")
    assert "\n" not in str(err.value)


def test_milabox_base_says_which_mirror_and_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.setattr(base.shutil, "which", lambda name: None)  # stop before debootstrap would run
    lines: list[str] = []
    etc = _etc_apt(tmp_path, debian__sources=DEBIAN_SOURCES)
    with pytest.raises(MilaboxError, match="debootstrap is not installed"):
        base.make_local_base(object(), all_vendors()["cpu"], on_line=lines.append, force=True, etc_apt=etc)
    where = etc / "sources.list.d" / "debian.sources"
    assert lines == [f"Debian mirror http://mirror.example.internal/debian, from this host's apt sources ({where})"]


def test_without_a_configured_index_pip_keeps_its_own_default(monkeypatch):
    index = pytest.importorskip("pip._internal.models.index")
    monkeypatch.setattr(sources, "pip_config", dict)
    assert discover().index_url == PYPI == index.PyPI.simple_url  # nothing of milabox's own
    monkeypatch.setattr(sources, "pip_config", lambda: {"index-url": "file:///srv/simple"})
    assert discover().index_url == PYPI  # a host-only index stays on the host
    monkeypatch.setattr(sources, "pip_config", lambda: {"index-url": "https://pypi.example.internal/simple",
                                                        "extra-index-url": "file:///x https://extra.example/simple"})
    found = discover()
    assert found.index_url == "https://pypi.example.internal/simple"
    assert found.extra_index_urls == ("https://extra.example/simple",)
    assert discover(index_url="https://cli.example/simple").index_url == "https://cli.example/simple"


def test_the_host_venv_resolves_like_pip_across_every_index():
    from milabox.images.sources import uv_environment
    env = uv_environment({"extra-index-url": "file:///somewhere/simple", "cert": "/etc/ssl/ca.pem"})
    assert "UV_EXTRA_INDEX_URL=file:///somewhere/simple" in env and "SSL_CERT_FILE=/etc/ssl/ca.pem" in env
    assert "UV_INDEX_STRATEGY=unsafe-best-match" in env  # else an extra index with an older ruff would win
