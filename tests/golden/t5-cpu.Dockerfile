# The t5 benchmark image (t5, t5-fp32) for vendor cpu.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:cpu-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/t5/
WORKDIR /opt/milabox/benchmarks/t5
ENV MILABOX_RESULTS=/results
CMD ["python", "main.py"]

LABEL org.opencontainers.image.title="milabox t5" \
      org.opencontainers.image.description="T5 seq2seq training" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="t5" \
      milabox.benchmarks="t5,t5-fp32" \
      milabox.vendor="cpu" \
      milabox.version="0.1.0"
