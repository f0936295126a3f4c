"""``python -m milabox_runtime``: a benchmark image's entrypoint, so that it runs with a plain ``docker run``.

Every benchmark image holds a catalog (``$MILABOX_CATALOG``, JSON written by milabox at build time): its rows,
each size's full config exactly as the host resolves it, and the ``docker run`` flags milabox itself passes for
the image's vendor. The image only reads it.

- ``docker run IMAGE`` prints what the image holds and how to run it (exit 0);
- ``docker run IMAGE list`` lists the rows and each size's config;
- ``docker run -v DIR:/results IMAGE run NAME [--size SIZE] [--set KEY=VALUE ...]`` runs one row: the same config
  dict the host would pass, handed the same way (``MILABOX_CONFIG``), to the benchmark's own ``main``, so the
  events are the same as under milabox.

Under milabox the host sets ``MILABOX_CONFIG`` and no command: the row's script then runs as it always did.
A user's mistake (no results mount, an unknown row or size, a bad ``--set``) is one line on stderr and exit 2.
Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

#: The environment variable naming the image's catalog (set by the benchmark image's Dockerfile).
CATALOG_ENV = "MILABOX_CATALOG"
#: The catalog's file name, beside the benchmark's code in the image.
CATALOG_NAME = "catalog.json"
#: The catalog format this module reads and milabox writes.
CATALOG_FORMAT = 1
#: Where a container writes its results: the one writable mount milabox gives it.
RESULTS_MOUNT = "/results"
#: Config keys that name the row, not a parameter of it: ``--set`` cannot change them.
FIXED_KEYS = ("benchmark", "group", "size", "precision", "unit")
USAGE_EXIT = 2
_PROG = "milabox_runtime"


class UsageError(Exception):
    """A mistake of whoever runs the image; ``str()`` is the one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own is usage + error: two lines
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def load_catalog(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read the image's catalog.

    Args:
        environ: the environment (``MILABOX_CATALOG`` names the file).

    Returns:
        The catalog.

    Raises:
        UsageError: it is not set, missing, not JSON, or of another format.
    """
    raw = environ.get(CATALOG_ENV, "").strip()
    if not raw:
        raise UsageError(f"{CATALOG_ENV} is not set: this is not a milabox benchmark image (or not one of "
                         "milabox 0.1.0 or later)")
    try:
        catalog = json.loads(Path(raw).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{CATALOG_ENV}={raw}: cannot be read as JSON ({exc})") from None
    if not isinstance(catalog, dict) or catalog.get("format") != CATALOG_FORMAT:
        raise UsageError(f"{CATALOG_ENV}={raw}: not a catalog of format {CATALOG_FORMAT}")
    catalog["folder"] = str(Path(raw).parent)
    return catalog


def _rows(catalog: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in catalog["benchmarks"]}


def _shell(arg: str) -> str:
    # "$(id -u)" and "$PWD" are for the reader's shell to expand: double quotes, not shlex's single ones.
    return f'"{arg}"' if "$" in arg else shlex.quote(arg)


def docker_run_line(catalog: Mapping[str, Any], *args: str) -> str:
    """The ``docker run`` line of this image with the flags milabox passes for its vendor, then ``args``.

    Args:
        catalog: the image's catalog.
        *args: the command given to the image (e.g. ``run``, a row's name).

    Returns:
        One line to paste into a shell.
    """
    return " ".join(_shell(a) for a in [*catalog["docker_run"], catalog["image"], *args])


def describe(catalog: Mapping[str, Any]) -> str:
    """What ``docker run IMAGE`` prints: the rows, the sizes, how to run one and where results go.

    Args:
        catalog: the image's catalog.

    Returns:
        The text.
    """
    rows = catalog["benchmarks"]
    width = max([len(r["name"]) for r in rows] + [4])
    sizes = catalog["sizes"]
    first = rows[0]["name"] if rows else "NAME"
    title = (f"{catalog['image']}: milabox {catalog['group']} benchmark image for vendor {catalog['vendor']} "
             f"(milabox {catalog['milabox_version']})")
    lines = [title, f"  {catalog['description']}", "",
             "Benchmarks (rows):"]
    lines += [f"  {r['name']:<{width}}  {r['precision']:<9} {r['unit']:<9} {r['plan']:<11} {r['description']}"
              for r in rows]
    lines += [f"  not on {catalog['vendor']}: {name} ({why})" for name, why in catalog["excluded"].items()]
    lines += ["", f"Sizes: {', '.join(sizes)} (default {sizes[0]}); `list` shows each size's config.", "",
              f"Run one (the flags milabox itself passes on {catalog['vendor']}; from {catalog['flags_source']}):",
              "", "  mkdir -p results",
              f"  {docker_run_line(catalog, 'run', first, '--size', sizes[0])}", ""]
    lines += [f"  - {note}" for note in catalog["notes"]]
    lines += ["", f"Results: {RESULTS_MOUNT}/events.jsonl (the format of milabox's attempt folders); the same events",
              "as under milabox. Options of `run`: --size SIZE, --set KEY=VALUE (repeatable; a value is JSON,",
              "else a string) to change one parameter of the size's config.", "",
              "Commands: (none) this help; list; run NAME [--size SIZE] [--set KEY=VALUE ...]"]
    return "\n".join(lines) + "\n"


def listing(catalog: Mapping[str, Any]) -> str:
    """What ``docker run IMAGE list`` prints: one row a line, then each size's full config.

    Args:
        catalog: the image's catalog.

    Returns:
        The text.
    """
    lines = []
    for row in catalog["benchmarks"]:
        lines.append(f"{row['name']}  {row['precision']}  {row['unit']}  {row['plan']}  {row['description']}")
        lines += [f"    {size}: {json.dumps(config, sort_keys=True)}" for size in catalog["sizes"]
                  if (config := row["sizes"].get(size)) is not None]
    return "\n".join(lines) + "\n"


def _same_kind(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, (int, float)):
        return isinstance(new, int) or (isinstance(old, float) and isinstance(new, float))
    return type(old) is type(new)


def apply_set(config: dict[str, Any], text: str) -> None:
    """Apply one ``--set KEY=VALUE`` to a config (the value read as JSON, else as a string).

    Args:
        config: the size's config; changed in place.
        text: ``KEY=VALUE``.

    Raises:
        UsageError: no ``=``, an empty or fixed key, a non-finite number, or a value of another kind than the
            key's current one (an integer for an integer...).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. --set steps=5")
    if key in FIXED_KEYS:
        raise UsageError(f"--set {key}: names the row, not a parameter; cannot be set ({', '.join(FIXED_KEYS)})")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"--set {text}: {raw} is not a finite number")
    if key in config and not _same_kind(config[key], value):
        raise UsageError(f"--set {text}: {key} is {json.dumps(config[key])} in this size's config; "
                         f"expected a value of the same kind, not {raw!r}")
    config[key] = value


def resolve(catalog: Mapping[str, Any], name: str, size: str | None, sets: Sequence[str]) -> dict[str, Any]:
    """The config of one row and size, as the host would pass it, with ``--set`` changes applied and checked.

    Args:
        catalog: the image's catalog.
        name: the row.
        size: the size (None: the first of the catalog's sizes).
        sets: ``KEY=VALUE`` changes.

    Returns:
        The config (what ``MILABOX_CONFIG`` holds).

    Raises:
        UsageError: an unknown row or size, a row excluded from this vendor, a bad ``--set`` or loop control.
    """
    rows = _rows(catalog)
    if name not in rows:
        if name in catalog["excluded"]:
            raise UsageError(f"{name} does not run on {catalog['vendor']}: {catalog['excluded'][name]}")
        raise UsageError(f"unknown benchmark {name!r}; this image holds: {', '.join(rows) or 'none'}")
    size = size or catalog["sizes"][0]
    if size not in rows[name]["sizes"]:
        raise UsageError(f"--size {size}: unknown size; valid: {', '.join(rows[name]['sizes'])}")
    config = dict(rows[name]["sizes"][size])
    for text in sets:
        apply_set(config, text)
    from .run import Run  # the checks the benchmark's own Run makes, before anything runs
    try:
        Run(config=config, device="cpu")
    except ValueError as exc:
        raise UsageError(f"{name} --size {size}: {exc}") from None
    return config


def check_results(folder: str) -> Path:
    """The results folder, checked: a folder this process can write into and, at ``/results``, a mount.

    A ``/results`` that is not a mount point is the container's own filesystem: what is written there is lost
    with the container.

    Args:
        folder: ``$MILABOX_RESULTS`` (the image sets ``/results``).

    Returns:
        The folder.

    Raises:
        UsageError: it is not mounted (at ``/results``), not a folder, or not writable.
    """
    path = Path(folder)
    hint = f"mount a host folder there: docker run -v \"$PWD/results:{RESULTS_MOUNT}\" ..."
    if path == Path(RESULTS_MOUNT) and not os.path.ismount(path):
        raise UsageError(f"{RESULTS_MOUNT} is not a mount point, so the results would be lost with the container; "
                         + hint)
    if not path.is_dir():
        raise UsageError(f"results folder {path} is not a folder; {hint}")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"results folder {path} is not writable ({exc.strerror or exc}); mount it read-write "
                         "(no :ro) and run as a user that may write there (--user)") from None
    return path


def _parser() -> _Parser:
    parser = _Parser(prog=_PROG, description="What this milabox benchmark image holds, and how to run it.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("help", help="what the image holds and how to run it (the default)")
    commands.add_parser("list", help="the rows and each size's config")
    run = commands.add_parser("run", help="run one row; its events go to $MILABOX_RESULTS (/results)")
    run.add_argument("name", help="the row, e.g. one `list` shows")
    run.add_argument("--size", help="the size (default: the first the image lists, smoke)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="change one parameter of the size's config (repeatable; default: none)")
    return parser


def _exec(catalog: Mapping[str, Any], environ: Mapping[str, str]) -> NoReturn:
    # exec, not a child: the benchmark becomes PID 1 and gets docker's SIGTERM itself, as under milabox.
    os.chdir(catalog["folder"])
    entry = catalog["entry"]
    os.execve(sys.executable, [sys.executable, entry], dict(environ))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The entrypoint: help, list, run, or (``MILABOX_CONFIG`` set, no command) the host's attempt as before.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        environ: the environment (default: ``os.environ``).

    Returns:
        The exit code: 0, or 2 after a one-line error on stderr. ``run`` does not return: it becomes the
        benchmark's process.
    """
    env = dict(os.environ if environ is None else environ)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        options = _parser().parse_args(args)
        catalog = load_catalog(env)
        if options.command is None and env.get("MILABOX_CONFIG", "").strip():
            _exec(catalog, env)  # under milabox: the host chose the row and its config
        if options.command in (None, "help"):
            sys.stdout.write(describe(catalog))
        elif options.command == "list":
            sys.stdout.write(listing(catalog))
        else:
            config = resolve(catalog, options.name, options.size, options.sets)
            results = check_results(env.get("MILABOX_RESULTS") or RESULTS_MOUNT)
            env.update(MILABOX_CONFIG=json.dumps(config, sort_keys=True), MILABOX_RESULTS=str(results),
                       MILABOX_BENCHMARK=options.name)
            print(f"{_PROG}: running {options.name} ({config['size']}) into {results}", flush=True)
            _exec(catalog, env)
    except UsageError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    sys.stdout.flush()
    return 0
