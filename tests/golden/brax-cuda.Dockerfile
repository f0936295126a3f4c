# The brax benchmark image (brax) for vendor cuda.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime-jax:cuda-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/brax/
# What the image holds (its rows, each size's config, the docker run flags of cuda), written by milabox:
# the entrypoint reads it, so a plain `docker run IMAGE` says how to run the image without milabox.
COPY catalog.json /opt/milabox/benchmarks/brax/catalog.json
WORKDIR /opt/milabox/benchmarks/brax
ENV MILABOX_RESULTS=/results \
    MILABOX_CATALOG=/opt/milabox/benchmarks/brax/catalog.json
# Under milabox (MILABOX_CONFIG set, no command) it runs the row's script as before; alone it prints its help.
ENTRYPOINT ["python", "-m", "milabox_runtime"]
CMD []

LABEL org.opencontainers.image.title="milabox brax" \
      org.opencontainers.image.description="Brax PPO on Ant (JAX, MJX physics), all devices" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="brax" \
      milabox.benchmarks="brax" \
      milabox.vendor="cuda" \
      milabox.version="0.1.0"
