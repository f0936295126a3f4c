# The matmul benchmark image (matmul-fp32, matmul-tf32, matmul-fp16, matmul-bf16) for vendor xpu.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:xpu-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/matmul/
WORKDIR /opt/milabox/benchmarks/matmul
ENV MILABOX_RESULTS=/results
CMD ["python", "main.py"]

LABEL org.opencontainers.image.title="milabox matmul" \
      org.opencontainers.image.description="Square matrix multiply throughput" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="matmul" \
      milabox.benchmarks="matmul-fp32,matmul-tf32,matmul-fp16,matmul-bf16" \
      milabox.vendor="xpu" \
      milabox.version="0.1.0"
