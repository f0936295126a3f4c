"""The shipped CPU runtime image holds nothing of the build site: no wheelhouse, lock, installer or CA bundle,
no index or certificate settings in its environment or history; its frozen versions are what is installed; and
the CPU suite's images add little disk on top of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CPU, PROJECT, _Quiet

from milabox.definitions.benchmarks import all_benchmarks
from milabox.engine import ContainerRequest
from milabox.images.build import build
from milabox.images.naming import runtime_tag
from milabox.images.sources import discover

pytestmark = pytest.mark.engine

# Names of the build site's package settings (pip's and uv's index, certificate and proxy variables).
_NETWORK_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_PROXY", "SSL_CERT_FILE", "UV_")
# What only installing needs, at the paths the build stage uses.
_BUILD_ONLY = ("/opt/milabox/wheelhouse", "/opt/milabox/requirements.lock", "/etc/milabox/ca-bundle.crt",
               "/usr/local/bin/uv")
_CHECK = ("for p in {paths}; do [ ! -e $p ] || echo present: $p; done; "
          "pip freeze | diff - /opt/milabox/runtime-constraints.txt && echo freeze-matches")


@pytest.fixture(scope="module")
def suite(engine, tmp_path_factory):
    """The CPU runtime image and the whole CPU suite's images on it (cached where `make demo` built them)."""
    build(engine, list(all_benchmarks().values()), CPU, discover(), _Quiet(), tmp_path_factory.mktemp("logs"))
    return runtime_tag(CPU)


def test_runtime_image_has_no_build_site_settings_in_env_or_history(engine, suite):
    sources = discover()
    env = engine.client.api.inspect_image(suite)["Config"]["Env"]
    assert [v for v in env if v.startswith(_NETWORK_ENV)] == []
    history = "\n".join(layer["CreatedBy"] for layer in engine.client.api.history(suite))
    assert "pip install" not in history and "uv pip" not in history  # the install ran in the build stage
    for secret in (sources.index_url, *sources.extra_index_urls, CPU.torch_index, "ca-bundle", "wheelhouse",
                   "requirements.lock", *_NETWORK_ENV):
        assert secret not in history, secret
    if sources.ca_bundle:
        assert str(sources.ca_bundle) not in history


def test_runtime_image_holds_no_build_only_files_and_freezes_what_it_installed(engine, suite, tmp_path):
    log = tmp_path / "check.log"
    command = ("bash", "-c", _CHECK.format(paths=" ".join(_BUILD_ONLY)))
    request = ContainerRequest(image=suite, command=command, labels={"milabox.benchmark": "clean-check"})
    with open(log, "wb") as out, engine.container(request) as container:
        container.start(out)
        container.wait(120)
    output = log.read_text()
    assert "present:" not in output and output.strip().endswith("freeze-matches"), output
    frozen = engine.client.api.inspect_image(suite)  # the constraints file the benchmark images install against
    assert "PIP_CONSTRAINT=/opt/milabox/runtime-constraints.txt" in frozen["Config"]["Env"]


def test_cpu_suite_disk_is_at_most_5_percent_over_the_runtime_image(suite):
    proc = subprocess.run([sys.executable, str(PROJECT / "scripts" / "disk.py"), "cpu"], capture_output=True,
                          text=True, check=False, cwd=Path(PROJECT))
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
