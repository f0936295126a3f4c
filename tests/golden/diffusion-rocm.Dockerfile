# The diffusion benchmark image (diffusion) for vendor rocm.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:rocm-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/diffusion/
WORKDIR /opt/milabox/benchmarks/diffusion
ENV MILABOX_RESULTS=/results
CMD ["python", "main.py"]

LABEL org.opencontainers.image.title="milabox diffusion" \
      org.opencontainers.image.description="Stable Diffusion UNet training step" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="diffusion" \
      milabox.benchmarks="diffusion" \
      milabox.vendor="rocm" \
      milabox.version="0.1.0"
