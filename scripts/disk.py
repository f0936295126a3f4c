"""Print the disk the CPU suite's images take, against the goal: at most 1.05 x the runtime image's size.

Layers shared between images count once (the engine's own `docker system df -v` accounting): the suite's
unique disk is the runtime image plus what each benchmark image adds on top of shared layers.
"""

from __future__ import annotations

import sys

from milabox.definitions.benchmarks import all_benchmarks
from milabox.definitions.vendors import get_vendor
from milabox.engine.docker import Engine
from milabox.images.naming import benchmark_tag, groups_of, runtime_tag

MB = 1e6
# Benchmark images add only their code on the runtime image's layers: 5% over it is already a lot of code.
GOAL = 1.05


def main(vendor_name: str = "cpu") -> int:
    vendor, engine = get_vendor(vendor_name), Engine()
    usage = {tag: img for img in engine.disk_usage() for tag in img["tags"]}
    groups = groups_of([b for b in all_benchmarks().values() if b.supports(vendor.name)])
    # Each framework's runtime image the suite builds on (torch, jax): the goal is over all of them together.
    runtimes: dict[str, dict] = {}
    for framework in dict.fromkeys(benches[0].framework for benches in groups.values()):
        runtime = usage.get(runtime_tag(vendor, framework))
        if runtime is None:
            print(f"{runtime_tag(vendor, framework)} is not built: run `milabox build --suite all --vendor {vendor.name}`")
            return 1
        runtimes[framework] = runtime
    shared = sum(r["size"] for r in runtimes.values())
    rows, unique = [], shared
    for group, benches in groups.items():
        img, runtime = usage.get(benchmark_tag(group, vendor)), runtimes[benches[0].framework]
        if img is None:
            print(f"{benchmark_tag(group, vendor)} is not built")
            return 1
        if engine.image(benchmark_tag(group, vendor)).labels.get("milabox.runtime_image_id") != runtime["id"]:
            print(f"{benchmark_tag(group, vendor)} was built on an older runtime image: rebuild it first")
            return 1
        own = img["size"] - runtime["size"]  # what the benchmark image adds on top of the runtime's layers
        unique += own
        rows.append((group, img["size"], own))
    print(f"{'image':<40} {'size MB':>10} {'unique MB':>10}")
    for framework, runtime in runtimes.items():
        print(f"{runtime_tag(vendor, framework):<40} {runtime['size'] / MB:>10.1f} {runtime['size'] / MB:>10.1f}")
    for group, size, own in rows:
        print(f"{benchmark_tag(group, vendor):<40} {size / MB:>10.1f} {own / MB:>10.1f}")
    ratio = unique / shared
    print(f"\nunique disk of the {vendor.name} suite: {unique / MB:.1f} MB = {ratio:.3f} x its runtime images "
          f"(goal <= {GOAL}): {'OK' if ratio <= GOAL else 'OVER'}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
