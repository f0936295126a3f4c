# The dlrm benchmark image (dlrm) for vendor cpu.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:cpu-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/dlrm/
WORKDIR /opt/milabox/benchmarks/dlrm
ENV MILABOX_RESULTS=/results
CMD ["python", "main.py"]

LABEL org.opencontainers.image.title="milabox dlrm" \
      org.opencontainers.image.description="DLRM recommendation model training on synthetic click data" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="dlrm" \
      milabox.benchmarks="dlrm" \
      milabox.vendor="cpu" \
      milabox.version="0.1.0"
