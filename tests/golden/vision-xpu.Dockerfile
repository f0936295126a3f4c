# The vision benchmark image (resnet50, resnet50-noio, convnext_large-tf32-fp16, convnext_large-fp32, regnet_y_128gf, dinov2-giant-single, dinov2-giant-gpus, lightning-gpus, resnet152-ddp-gpus) for vendor xpu.
# Rendered by milabox 0.1.0 from milabox/images/templates/benchmark.Dockerfile.j2; edit the template, not this file.
FROM milabox/runtime:xpu-0.1.0

# Its Python dependencies are in the runtime image (the vendor's joint lock): only the code is added here,
# so a code change rebuilds one small layer.
COPY benchmark/ /opt/milabox/benchmarks/vision/
# What the image holds (its rows, each size's config, the docker run flags of xpu), written by milabox:
# the entrypoint reads it, so a plain `docker run IMAGE` says how to run the image without milabox.
COPY catalog.json /opt/milabox/benchmarks/vision/catalog.json
WORKDIR /opt/milabox/benchmarks/vision
ENV MILABOX_RESULTS=/results \
    MILABOX_CATALOG=/opt/milabox/benchmarks/vision/catalog.json
# Under milabox (MILABOX_CONFIG set, no command) it runs the row's script as before; alone it prints its help.
ENTRYPOINT ["python", "-m", "milabox_runtime"]
CMD []

LABEL org.opencontainers.image.title="milabox vision" \
      org.opencontainers.image.description="Vision model training (CNN classifiers, self-supervised ViT)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.vendor="milabox" \
      milabox.benchmark="vision" \
      milabox.benchmarks="resnet50,resnet50-noio,convnext_large-tf32-fp16,convnext_large-fp32,regnet_y_128gf,dinov2-giant-single,dinov2-giant-gpus,lightning-gpus,resnet152-ddp-gpus" \
      milabox.vendor="xpu" \
      milabox.version="0.1.0"
