"""Moving images and results between sites: checked archives, bundles, results packs and registries.

- ``archive`` (+ ``checksums``): the checked archive format every bundle and pack uses.
- ``manifest``: the shared check of a bundle's or pack's manifest.
- ``bundle``: images for an air-gapped site, verified before anything is loaded.
- ``resultspack``: run folders travelling back, imported as local runs.
- ``registry``: pushing and pulling images by digest.
"""
