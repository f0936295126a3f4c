"""Show a run's provenance record (``provenance.json``): read it back and render it as readable text.

What the record holds and how it is collected is in milabox.execution.provenance.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tabulate import tabulate

from milabox.errors import ResultsError
from milabox.rundir.layout import PROVENANCE_NAME


def load_provenance(run_dir: Path) -> dict[str, Any]:
    """Read a run folder's ``provenance.json``.

    Args:
        run_dir: the run folder.

    Returns:
        The record, as written by :func:`milabox.execution.provenance.collect`.

    Raises:
        ResultsError: the file is missing (runs made before provenance was recorded) or is not a JSON object.
    """
    path = Path(run_dir) / PROVENANCE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: missing (the run folder has no provenance record; runs made before "
                           "milabox recorded provenance do not)") from None
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a JSON object")
    return data


def _value(v: Any) -> str:
    if v is None or v == "" or v == [] or v == {}:
        return "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(map(_value, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _pairs(d: dict[str, Any]) -> str:
    return tabulate([[k, _value(v)] for k, v in d.items()], tablefmt="plain")


def _indent(text: str) -> str:
    return textwrap.indent(text, "  ")


def format_provenance(data: dict[str, Any], title: str = "") -> str:
    """A provenance record as readable text: key-value tables, one table of devices, images, attempts.

    Args:
        data: what :func:`load_provenance` returned.
        title: a heading, e.g. the run folder.

    Returns:
        The text (no trailing newline).

    Raises:
        Nothing.
    """
    milabox = data.get("milabox") or {}
    out = [f"Provenance{' of ' + title if title else ''} (recorded {data.get('created', '?')})",
           f"milabox {milabox.get('version', '?')}, source commit {milabox.get('source_commit', '?')}",
           "command: " + " ".join(data.get("command") or []), ""]
    for heading, key in (("settings", "settings"), ("host", "host"), ("container engine", "engine")):
        if isinstance(data.get(key), dict) and data[key]:
            shown = {k: v for k, v in data[key].items() if k != "command"}  # already on its own line
            out += [heading, _indent(_pairs(shown)), ""]
    devices = data.get("devices") or {}
    for name, facts in (devices.get("backends") or {}).items():
        rows = facts.get("devices") if isinstance(facts, dict) else None
        shared = {k: v for k, v in (facts or {}).items() if k != "devices"} if isinstance(facts, dict) else {}
        out.append(f"devices via {name}: {len(rows or [])}" + (f" ({_value(shared)})" if shared else ""))
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r if k != "discovery"))
            out.append(_indent(tabulate([[_value(r.get(k)) for k in keys] for r in rows], headers=keys)))
        out.append("")
    images = data.get("images") or {}
    if images:
        out.append("images")
        out.append(_indent(tabulate(
            [[g, i.get("ref"), (i.get("id") or "-")[:19], _value(i.get("digests")),
              (i.get("labels") or {}).get("milabox.source_commit", "-")[:12],
              _value((i.get("torch") or {}).get("version")), len(i.get("packages") or [])] for g, i in images.items()],
            headers=["group", "image", "id", "digests", "sources", "torch", "packages"])))
        for group, info in images.items():
            if info.get("packages"):
                out.append(f"  packages of {group}:")
                out.append(textwrap.fill(", ".join(info["packages"]), 110, initial_indent="    ",
                                         subsequent_indent="    "))
        out.append("")
    attempts = data.get("attempts") or []
    if attempts:
        out.append(f"attempts ({len(attempts)}): reproduce each with")
        for a in attempts:
            out += [f"  {a.get('folder')}:", f"    {a.get('reproduce')}"]
    return "\n".join(out).rstrip()
