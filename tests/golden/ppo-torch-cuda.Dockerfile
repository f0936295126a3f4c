# The ppo-torch benchmark image (ppo-torch) for vendor cuda.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:cuda-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/ppo-torch/
# What the image holds (its rows, each size's config, the docker run flags of cuda), written by milabox:
# the entrypoint reads it, so a plain `docker run IMAGE` says how to run the image without milabox.
COPY catalog.json /opt/milabox/benchmarks/ppo-torch/catalog.json
WORKDIR /opt/milabox/benchmarks/ppo-torch
ENV MILABOX_RESULTS=/results \
    MILABOX_CATALOG=/opt/milabox/benchmarks/ppo-torch/catalog.json
# Under milabox (MILABOX_CONFIG set, no command) it runs the row's script as before; alone it prints its help.
ENTRYPOINT ["python", "-m", "milabox_runtime"]
CMD []

LABEL org.opencontainers.image.title="milabox ppo-torch" \
      org.opencontainers.image.description="PPO on a device-simulated batched environment (torch port, unscored)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="ppo-torch" \
      milabox.benchmarks="ppo-torch" \
      milabox.vendor="cuda" \
      milabox.version="0.1.0"
