"""Vendor base images: find one locally, pull it, or make the CPU vendor's with debootstrap (air-gapped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from milabox.definitions.vendors import LocalBase, Vendor
from milabox.engine import Engine
from milabox.errors import BaseImageMissing, ConfigError, MilaboxError
from milabox.images.sources import ETC_APT, debian_mirror


def resolve_base(engine: Engine, vendor: Vendor, override: str | None = None, pull: bool = True) -> str:
    """Pick the base image a vendor's runtime image is built FROM.

    Order: ``override``; the vendor's ``base_image`` if present locally; its locally made base if
    present; ``base_image`` pulled from its registry (when ``pull``).

    Args:
        engine: the engine.
        vendor: the vendor.
        override: a base image the user chose instead (``--base-image``).
        pull: whether to try pulling a missing image.

    Returns:
        The image reference to build FROM.

    Raises:
        BaseImageMissing: none of them is present or pullable (the message says how to make or load one).
    """
    candidates = [override] if override else [vendor.base_image]
    if not override and vendor.local_base:
        candidates.append(vendor.local_base.tag)
    for ref in candidates:
        if engine.image(ref):
            return ref
    if pull and engine.pull(candidates[0]):
        return candidates[0]
    how = (f"make it locally with `milabox base --vendor {vendor.name}` (debootstrap, no registry needed), "
           if vendor.local_base and not override else "")
    raise BaseImageMissing(
        f"base image {candidates[0]} for vendor {vendor.name} is not present and could not be pulled; "
        f"{how}`docker load -i` it from an archive, or pass --base-image with an image you have")


def debootstrap_mirror(vendor: Vendor, recipe: LocalBase, etc_apt: Path = ETC_APT) -> tuple[str, str]:
    """The Debian mirror a locally made base is bootstrapped from, and where that choice came from.

    Order: the vendor file's ``[local_base] mirror`` when it sets one (an explicit choice wins); else this host's
    apt sources (the first ``deb`` entry serving the recipe's suite, see :func:`milabox.images.sources.debian_mirror`).

    Args:
        vendor: the vendor (its file is named in messages).
        recipe: its ``local_base`` recipe.
        etc_apt: apt's configuration folder (default ``/etc/apt``).

    Returns:
        (mirror URL, where it came from, for a message).

    Raises:
        ConfigError: neither names a mirror (the message says to set ``[local_base] mirror``).
    """
    if recipe.mirror:
        return recipe.mirror, f"[local_base] mirror in {vendor.path}"
    found = debian_mirror(recipe.suite, etc_apt)
    if found is not None:
        return found.uri, f"this host's apt sources ({found.path})"
    raise ConfigError(f"no Debian mirror for {recipe.suite}: this host's apt sources ({etc_apt}/sources.list, "
                      f"{etc_apt}/sources.list.d/) serve no {recipe.suite} suite; set `[local_base] mirror` "
                      f"in {vendor.path}")


def make_local_base(engine: Engine, vendor: Vendor, on_line: Callable[[str], None] = print,
                    force: bool = False, etc_apt: Path = ETC_APT) -> str:
    """Make a vendor's base image from Debian packages with debootstrap and import it into the engine.

    Args:
        engine: the engine to import into.
        vendor: a vendor with a ``local_base`` recipe (the CPU vendor).
        on_line: progress messages (the Debian mirror used, and where it came from, among them).
        force: make it again even when a base image is present or pullable (default false).
        etc_apt: apt's configuration folder the mirror is looked up in (default ``/etc/apt``; see
            :func:`debootstrap_mirror`).

    Returns:
        The base image now present (the made one, or one already there).

    Raises:
        ConfigError: no Debian mirror is known (see :func:`debootstrap_mirror`).
        MilaboxError: the vendor has no recipe, debootstrap is missing or failed, or we are not root.
    """
    recipe = vendor.local_base
    if recipe is None:
        raise MilaboxError(f"vendor {vendor.name} has no local_base recipe in {vendor.path}; pull or load "
                           f"{vendor.base_image} instead")
    if not force:
        try:
            present = resolve_base(engine, vendor)
            on_line(f"base image {present} already present")
            return present
        except BaseImageMissing:
            pass
    mirror, origin = debootstrap_mirror(vendor, recipe, etc_apt)
    on_line(f"Debian mirror {mirror}, from {origin}")
    if shutil.which("debootstrap") is None:
        raise MilaboxError("debootstrap is not installed; install it (`apt-get install debootstrap`) "
                           "or load a base image with `docker load`")
    if os.geteuid() != 0:
        raise MilaboxError("debootstrap must run as root to make a base image; run `sudo milabox base`")
    repository, _, tag = recipe.tag.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="milabox-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        on_line(f"debootstrap --variant={recipe.variant} {recipe.suite} from {mirror} (about 30 s)")
        proc = subprocess.run(["debootstrap", f"--variant={recipe.variant}", recipe.suite, rootfs, mirror],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise MilaboxError(f"debootstrap failed (exit {proc.returncode}): {last[0]}")
        # Package lists and caches only bloat the image; builds run apt-get update themselves.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(os.path.join(rootfs, sub), ignore_errors=True)
            os.makedirs(os.path.join(rootfs, sub, "partial"), exist_ok=True)
        on_line(f"importing the root filesystem as {recipe.tag}")
        tar = subprocess.Popen(["tar", "-C", rootfs, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        image_id = engine.import_rootfs(tar.stdout, repository, tag)
        if tar.wait() != 0:
            engine.remove_image(recipe.tag)
            raise MilaboxError("tar of the debootstrapped root filesystem failed; nothing was imported")
    on_line(f"base image {recipe.tag} made ({image_id[:19]})")
    return recipe.tag
