"""Reports over run folders: what each module is for.

- ``summary``: per-benchmark numbers and the suite score (``summarize``), optionally against a baseline.
- ``attempt_energy``: one attempt's energy from its ``telemetry.jsonl``.
- ``energy``: a benchmark's energy and power over its attempts.
- ``formats``: rendering a summary as a table, Markdown, CSV or JSON (``format_report``).
- ``compare``: side-by-side comparison of several runs, with significance of the differences.
- ``html``: a self-contained HTML report with plots.
- ``provenance``: reading a run's ``provenance.json`` back and showing it as text.
"""
