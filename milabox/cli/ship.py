"""Commands that move images and results between machines: bundle/load, results pack/import, push/pull."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import click

from milabox.cli.options import format_option, vendor_option


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class TransferDisplay:
    """Progress of big transfers: bytes done of the total, rate and time; one updating line on a terminal,
    a line every 10 s (and at the end) otherwise, so CI logs stay short."""

    def __init__(self, stream=None, interval_s: float | None = None, min_bytes: int = 32 * 2**20):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval_s if interval_s is not None else (0.2 if self.tty else 10.0)
        self.min_bytes = min_bytes  # smaller transfers (a results pack, a manifest) are over before one could read it
        self.started: dict[str, tuple[float, int | None, bool]] = {}
        self.quiet: set[str] = set()
        self.last_shown = 0.0

    def _line(self, what: str, done: int) -> str:
        t0, total, exact = self.started.get(what, (time.monotonic(), None, True))
        elapsed = max(time.monotonic() - t0, 1e-6)
        of = ""
        if total:
            pct = min(done / total, 0.99 if not exact else 1.0) * 100
            of = f" / {'~' if not exact else ''}{_size(total)} ({pct:.0f}%)"
        return f"  {what}: {_size(done)}{of}, {_size(done / elapsed)}/s, {elapsed:.0f}s"

    def _out(self, text: str, transient: bool) -> None:
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\033[K" + (text[:width] if transient else text + "\n"))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def transfer_started(self, what: str, total: int | None, exact: bool = True) -> None:
        if what in self.started:  # a second start (an estimate, then the stream's own) keeps the first clock
            t0, _, _ = self.started[what]
            self.started[what] = (t0, total, exact)
            return
        self.started[what] = (time.monotonic(), total, exact)
        self.last_shown = time.monotonic()
        if total is not None and total < self.min_bytes:
            self.quiet.add(what)
            return
        size = f" ({'~' if not exact else ''}{_size(total)})" if total else ""
        self._out(f"{what}{size}", transient=False)

    def transfer_advanced(self, what: str, done: int) -> None:
        now = time.monotonic()
        if what not in self.quiet and now - self.last_shown >= self.interval:
            self.last_shown = now
            self._out(self._line(what, done), transient=True)

    def transfer_ended(self, what: str, done: int) -> None:
        if what not in self.quiet:
            self._out(self._done(what, done), transient=False)
        self.started.pop(what, None)
        self.quiet.discard(what)

    def _done(self, what: str, done: int) -> str:
        t0, _, _ = self.started.get(what, (time.monotonic(), None, True))
        elapsed = max(time.monotonic() - t0, 1e-6)
        if not done:  # a phase with no byte count (the engine unpacking, a registry finishing)
            return f"  {what}: done in {elapsed:.1f}s"
        return f"  {what}: {_size(done)} in {elapsed:.1f}s ({_size(done / elapsed)}/s)"


def _vendor(name: str):
    from milabox.definitions.vendors import get_vendor
    return get_vendor(name)


def _benchmarks(names: tuple[str, ...]):
    from milabox.definitions.benchmarks import all_benchmarks, select
    return select(list(names), all_benchmarks())


@click.command("bundle")
@click.argument("benchmarks", nargs=-1)
@vendor_option
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the bundle file to write (a tar; replaced only once complete)")
@click.option("--dependencies/--no-dependencies", default=True, show_default=True,
              help="also carry the wheels of milabox's own dependencies, downloaded by this host's pip for its "
                   "Python and platform (the milabox wheel is always carried)")
def bundle_cmd(benchmarks: tuple[str, ...], vendor: str, output: Path, dependencies: bool) -> None:
    """Save the built images of BENCHMARKS (default: all), the runtime and the milabox wheel into one checked
    bundle file."""
    from milabox.cli.display import note
    from milabox.engine.docker import Engine
    from milabox.shipping.bundle import make_bundle
    manifest = make_bundle(Engine(), _benchmarks(benchmarks), _vendor(vendor), output, TransferDisplay(),
                           dependencies)
    for line in manifest["wheel_notes"]:
        note(f"warning: {line}")
    wheels = len(manifest["dependencies"]) + (manifest["wheel"] is not None)
    note(f"bundle {output}: {len(manifest['images'])} images, {wheels} wheels, {_size(output.stat().st_size)}")
    click.echo(f"on the target: milabox load {output.name} && {manifest['run']}")


@click.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_cmd(file: Path) -> None:
    """Check every checksum of a bundle FILE, then load its images into the engine."""
    from milabox.cli.display import note
    from milabox.engine.docker import Engine
    from milabox.shipping.bundle import load_bundle, version_note
    result = load_bundle(Engine(), file, TransferDisplay())
    manifest = result.manifest
    warning = version_note(manifest)
    if warning:
        note(f"warning: {warning}")
    if manifest.get("wheel"):
        click.echo(f"checked {manifest['wheel']['name']} and {len(manifest.get('dependencies', []))} dependency "
                   "wheels (install them offline: see the bundle's README.txt)")
    for image in manifest["images"]:
        click.echo(f"{'loaded' if result.loaded else 'present'} {image['tag']} {image['id'][:19]}")
    note(f"bundle checked{' and loaded' if result.loaded else ' (images already present)'} in {result.seconds:.1f}s; "
         f"run it with: {manifest['run']}")


@click.group("results")
def results_group() -> None:
    """Carry run folders between machines: pack one into a checked file, import it elsewhere."""


@results_group.command("pack")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the pack file to write (a tar)")
def pack_cmd(run_dir: Path, output: Path) -> None:
    """Pack the run folder RUN_DIR (every file, with checksums and provenance) into one file."""
    from milabox.cli.display import note
    from milabox.shipping.resultspack import pack_results
    pack = pack_results(run_dir, output, TransferDisplay())
    note(f"packed {pack['files']} files of run {pack['run']} into {output}")
    click.echo(f"on the receiving side: milabox results import {output.name}")


@results_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--into", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="folder of runs to add it to")
def import_cmd(file: Path, into: Path) -> None:
    """Check a results pack FILE and unpack it as a run folder that report and compare read like a local one."""
    from milabox.cli.display import note
    from milabox.shipping.resultspack import import_results
    result = import_results(file, into, TransferDisplay())
    by = result.pack.get("packed_by") or {}
    note(f"imported run {result.pack['run']} (packed {result.pack.get('packed')} on {by.get('host')})")
    click.echo(f"milabox report {result.run_dir}")


@results_group.command("adopt")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--vendor", default=None, help="the vendor it ran on (default: the one its events name)")
@click.option("--into", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="folder of runs to add it to")
def adopt_cmd(source: Path, vendor: str | None, into: Path) -> None:
    """Turn SOURCE, the folder (or a tar of it) a plain `docker run -v DIR:/results IMAGE run ROW` wrote, into a
    run folder that report and compare read like a local one (and `results pack` can carry on)."""
    from milabox.cli.display import note
    from milabox.shipping.plainrun import adopt_plain_run
    run_dir = adopt_plain_run(source, into, vendor)
    note(f"adopted {source} as {run_dir}")
    click.echo(f"milabox report {run_dir}")


def _transfer_rows(done, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([{"local": t.local, "remote": t.remote, "digest_ref": t.digest_ref, "id": t.image_id}
                               for t in done], indent=2))
    else:
        for t in done:
            click.echo(f"{t.local} -> {t.digest_ref}")


def _registry_command(action: str):
    @click.command(action)
    @click.argument("benchmarks", nargs=-1)
    @click.option("--registry", required=True, help="HOST[:PORT]/PREFIX, e.g. 127.0.0.1:5000/milabox")
    @vendor_option
    @format_option("text", "json")
    def command(benchmarks: tuple[str, ...], registry: str, vendor: str, fmt: str) -> None:
        from milabox.cli.display import note
        from milabox.engine.docker import Engine
        from milabox.shipping.registry import parse_registry, pull, push
        where = parse_registry(registry)
        move = push if action == "push" else pull
        done = move(Engine(), _benchmarks(benchmarks), _vendor(vendor), where, TransferDisplay())
        _transfer_rows(done, fmt)
        note(f"{action}ed {len(done)} images; runs now name them by digest")

    command.__doc__ = (f"{'Tag and push' if action == 'push' else 'Pull and tag'} the runtime image and the images of "
                       f"BENCHMARKS (default: all) {'to' if action == 'push' else 'from'} a registry; runs then "
                       "refer to them by digest.")
    command.help = command.__doc__
    return command


push_cmd = _registry_command("push")
pull_cmd = _registry_command("pull")

#: What milabox/cli/main.py registers.
COMMANDS = (bundle_cmd, load_cmd, results_group, push_cmd, pull_cmd)
