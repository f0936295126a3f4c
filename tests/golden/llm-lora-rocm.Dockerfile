# The llm-lora benchmark image (llm-lora-single, llm-lora-ddp-gpus, llm-lora-ddp-nodes, llm-lora-mp-gpus, llm-full-mp-gpus, llm-full-mp-nodes) for vendor rocm.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:rocm-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/llm-lora/
# What the image holds (its rows, each size's config, the docker run flags of rocm), written by milabox:
# the entrypoint reads it, so a plain `docker run IMAGE` says how to run the image without milabox.
COPY catalog.json /opt/milabox/benchmarks/llm-lora/catalog.json
WORKDIR /opt/milabox/benchmarks/llm-lora
ENV MILABOX_RESULTS=/results \
    MILABOX_CATALOG=/opt/milabox/benchmarks/llm-lora/catalog.json
# Under milabox (MILABOX_CONFIG set, no command) it runs the row's script as before; alone it prints its help.
ENTRYPOINT ["python", "-m", "milabox_runtime"]
CMD []

LABEL org.opencontainers.image.title="milabox llm-lora" \
      org.opencontainers.image.description="Llama-3.1 fine-tuning (LoRA with peft, or full), single device or FSDP-sharded, bf16" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="llm-lora" \
      milabox.benchmarks="llm-lora-single,llm-lora-ddp-gpus,llm-lora-ddp-nodes,llm-lora-mp-gpus,llm-full-mp-gpus,llm-full-mp-nodes" \
      milabox.vendor="rocm" \
      milabox.version="0.1.0"
