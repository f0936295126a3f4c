# The llm-lora benchmark image (llm-lora) for vendor cuda.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:cuda-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/llm-lora/
WORKDIR /opt/milabox/benchmarks/llm-lora
ENV MILABOX_RESULTS=/results
CMD ["python", "main.py"]

LABEL org.opencontainers.image.title="milabox llm-lora" \
      org.opencontainers.image.description="Llama-3.1-8B-like LoRA fine-tuning (peft), bf16" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="llm-lora" \
      milabox.benchmarks="llm-lora" \
      milabox.vendor="cuda" \
      milabox.version="0.1.0"
