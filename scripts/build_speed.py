"""How fast the runtime image installs its lock with uv against pip (goal: uv takes at most half pip's time).

Usage: python scripts/build_speed.py [vendor]   (default cpu; `make build-speed`)

Builds the vendor's runtime image twice with --no-cache in one run, from the same lock and the same package
sources (pip's configuration on this host): once with uv, once with pip. Prints both build times and, of each, the
time of the step that installs the lock, whether both images freeze the same versions (`pip freeze`), and a line
`ratio X` (uv build time / pip build time). Both images are tagged
apart from the real runtime tag and removed afterwards.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from milabox.definitions.vendors import get_vendor
from milabox.engine import ContainerRequest, Engine, connect
from milabox.images.build import LOCK_IN_CONTEXT, BuildResult, build_runtime
from milabox.images.render import INSTALLERS
from milabox.images.sources import discover

GOAL = 0.5
TAG = "milabox-build-speed/runtime:{vendor}-{installer}"


class _StepClock:
    """A build reporter that shows nothing (the full logs are kept in the temporary log folder) and times the step
    that installs the lock: the rest of the build (OS packages, layer commits, the copy out of the build stage) is
    the same for both installers."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, str]] = []
        self.finished = 0.0

    def begin(self, image: str, log_path: Path) -> None: ...
    def step(self, image: str, step: int, steps: int, instruction: str) -> None:
        self.starts.append((time.monotonic(), instruction))

    def line(self, image: str, text: str) -> None: ...
    def end(self, result: BuildResult) -> None:
        self.finished = time.monotonic()

    def install_seconds(self) -> float:
        """Seconds from the start of the RUN step that installs the lock to the start of the next step."""
        ends = [t for t, _ in self.starts[1:]] + [self.finished]
        return next(end - t for (t, step), end in zip(self.starts, ends, strict=True)
                    if step.startswith("RUN ") and LOCK_IN_CONTEXT in step)


def _freeze(engine: Engine, image: str, log: Path) -> str:
    request = ContainerRequest(image=image, command=("pip", "freeze"), labels={"milabox.benchmark": "pip-freeze"})
    with open(log, "wb") as out, engine.container(request) as container:
        container.start(out)
        container.wait(120)
    return log.read_text()


def main(vendor_name: str = "cpu") -> int:
    vendor, engine, sources = get_vendor(vendor_name), connect(), discover()
    seconds, install, frozen = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="milabox-build-speed-") as tmp:
        try:
            for installer in INSTALLERS:
                tag = TAG.format(vendor=vendor.name, installer=installer)
                print(f"building {tag} with --no-cache ...", flush=True)
                clock = _StepClock()
                result = build_runtime(engine, vendor, sources, clock, Path(tmp), no_cache=True, tag=tag,
                                       installer=installer)
                seconds[installer], install[installer] = result.seconds, clock.install_seconds()
                frozen[installer] = _freeze(engine, tag, Path(tmp) / f"freeze-{installer}.txt")
                print(f"{installer:<4} {result.seconds:7.1f} s  (installing the lock: {install[installer]:.1f} s)",
                      flush=True)
        finally:
            for installer in INSTALLERS:
                engine.remove_image(TAG.format(vendor=vendor.name, installer=installer))
    same = frozen["uv"] == frozen["pip"] and "torch==" + vendor.torch_version in frozen["uv"].splitlines()
    print(f"same pip freeze: {'yes' if same else 'NO'}")
    print(f"install step ratio {install['uv'] / install['pip']:.2f}  (uv/pip; the rest of the build is the same)")
    ratio = seconds["uv"] / seconds["pip"]
    print(f"ratio {ratio:.2f}  (uv/pip, goal <= {GOAL}): {'OK' if ratio <= GOAL else 'OVER'}")
    return 0 if same and ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
