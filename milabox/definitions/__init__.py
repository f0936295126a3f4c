"""What there is to run, as data: vendors (``milabox/vendors/*.toml``) and benchmarks (folders of
``benchmark.toml`` + ``main.py``: the bundled ``milabox/suite/`` and the user's own).

- ``toml``: reading definition files with one-line errors naming file and field.
- ``vendors``: a vendor's base image, torch, passthrough, device selection and abilities.
- ``benchmarks``: benchmark rows, their sizes and selection by name, group, family, tag or suite.
"""
