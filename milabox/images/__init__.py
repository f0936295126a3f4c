"""Images: what they are called, how their Dockerfiles are rendered and how they are built.

- ``naming``: tags, and which images a selection needs (the one place that knows the tag format).
- ``render``: Dockerfiles from ``templates/`` (one Jinja configuration for every template).
- ``sources``: where builds get packages from (pip's configuration, apt's sources).
- ``lock``: the vendor's joint, hashed lock.
- ``base``: base images made locally with debootstrap.
- ``build``: the runtime image and the benchmark images, through the engine.
"""
