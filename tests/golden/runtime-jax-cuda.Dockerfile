# The cuda JAX runtime image: NVIDIA GPUs through CUDA (NVIDIA Container Toolkit on the host).
# Rendered by milabox 0.1.0 from milabox/images/templates/runtime.Dockerfile.j2; edit the template, not this file.
# Every JAX benchmark image of this vendor starts FROM it, so Python, jax and the runtime are shared layers.
# Three stages: "system" (the OS packages both others share), "build" (installs the lock with everything only
# installing needs: lock, wheelhouse, uv, index and CA settings) and the shipped image, which copies the
# venv and the frozen versions out of "build" and nothing of the build site's network.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS system

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp

# Versions come from the base image's release; the base image (pinned by digest where set) pins them.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM system AS build
# uv, the host's own binary (milabox depends on it), so no index is needed to get it.
COPY uv /usr/local/bin/uv
# The build machine's CA bundle, so uv works behind a TLS-intercepting proxy.
COPY ca-bundle.crt /etc/milabox/ca-bundle.crt
# uv reads no PIP_* settings; it trusts the CA bundle named by SSL_CERT_FILE
# (https://docs.astral.sh/uv/concepts/authentication/certificates/).
ENV UV_INDEX_URL=https://pypi.example.internal/simple \
    SSL_CERT_FILE=/etc/milabox/ca-bundle.crt \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy

RUN python3 -m venv /opt/venv

# Every JAX benchmark's Python dependencies and the exact jax, resolved jointly for this vendor and pinned
# with hashes (milabox/vendors/locks/cuda-jax.txt): heavy libraries are installed once, here.
COPY requirements.lock /opt/milabox/requirements.lock
# Like pip, uv here takes each locked version from whichever index has it (the hashes decide) and compiles bytecode
# (https://docs.astral.sh/uv/pip/compatibility/).
RUN uv pip install --python /opt/venv/bin/python --require-hashes -r /opt/milabox/requirements.lock \
    --index-strategy unsafe-best-match --compile-bytecode \
 && pip freeze > /opt/milabox/runtime-constraints.txt

FROM system
COPY --from=build /opt/venv /opt/venv
# Benchmark images install against the frozen versions: nothing later can swap jax out.
COPY --from=build /opt/milabox/runtime-constraints.txt /opt/milabox/runtime-constraints.txt
ENV PIP_CONSTRAINT=/opt/milabox/runtime-constraints.txt

COPY milabox_runtime/ /opt/milabox/runtime/milabox_runtime/
ENV PYTHONPATH=/opt/milabox/runtime \
    MILABOX_VENDOR=cuda

LABEL org.opencontainers.image.title="milabox JAX runtime for cuda" \
      org.opencontainers.image.description="NVIDIA GPUs through CUDA (NVIDIA Container Toolkit on the host)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      org.opencontainers.image.base.name="nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04" \
      milabox.vendor="cuda" \
      milabox.version="0.1.0" \
      milabox.jax="0.9.2"
