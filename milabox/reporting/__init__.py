"""Reports over run folders: what each module is for.

- ``summary``: per-benchmark numbers and the suite score (``summarize``), optionally against a baseline.
- ``energy``: a benchmark's energy and power from the host's telemetry samples.
- ``formats``: rendering a summary as a table, Markdown, CSV or JSON (``format_report``).
- ``stats``: descriptive statistics, confidence intervals, significance tests, weighted geometric means.
- ``compare``: side-by-side comparison of several runs, with significance of the differences.
- ``html``: a self-contained HTML report with plots.
- ``provenance``: reading a run's ``provenance.json`` back and showing it as text.
"""
