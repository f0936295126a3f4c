"""The run folder: the one format between running and reporting (docs/results-format.md).

- ``layout``: file names, format version, attempt folder names, atomic writes.
- ``model``: what a run folder holds, as dataclasses.
- ``read``: reading run folders into them.
- ``outcome``: how an attempt's end becomes its status and cause.
"""
