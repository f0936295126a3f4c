"""Moving images and files out of a Docker engine: ``docker save``/``load`` streams, push, pull, image files.

:class:`DockerTransfers` is a part of :class:`milabox.engine.docker.DockerEngine` (a base class holding the
transfer methods, so neither module grows past a screenful of concerns); it needs the engine's ``client``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import docker
import docker.errors
import requests.exceptions

from milabox.engine import CONTAINER_LABEL
from milabox.errors import EngineError

# Go's os.ModeType (the engine's stat "mode"): directory, symlink, device, named pipe, socket, char device, irregular.
_NOT_REGULAR = 1 << 31 | 1 << 27 | 1 << 26 | 1 << 25 | 1 << 24 | 1 << 21 | 1 << 19


def explain(e: docker.errors.APIError) -> str:
    """The first line of what the engine said in an API error.

    Args:
        e: the error docker-py raised.

    Returns:
        One line (the engine's explanation where it gave one, else the error's text).
    """
    return str(getattr(e, "explanation", None) or e).strip().splitlines()[0]


class DockerTransfers:
    """Image transfers of a Docker engine (image files, bundles, push, pull), through its docker-py ``client``.

    Attributes:
        client: the connected docker-py client (set by the engine).
    """

    client: docker.DockerClient

    def read_image_files(self, ref: str, paths: list[str], max_bytes: int = 16 * 2**20) -> dict[str, bytes | None]:
        """See :meth:`milabox.engine.Engine.read_image_files` (the contract documents it)."""
        try:
            handle = self.client.containers.create(ref, command=["true"], network_mode="none",
                                                   labels={CONTAINER_LABEL: "read-image-files"})
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {ref} is not present; build it with `milabox build`") from None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot read files from image {ref}: {explain(e)}") from None
        try:
            return {path: self._copy_out(handle, path, max_bytes) for path in paths}
        finally:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError, requests.exceptions.RequestException):
                handle.remove(force=True)

    def _copy_out(self, handle: Any, path: str, max_bytes: int) -> bytes | None:
        api = self.client.api
        # Stat first (HEAD): an archive stream left half-read would block the engine from removing the container.
        try:
            head = api.head(f"{api.base_url}/v{api.api_version}/containers/{handle.id}/archive", params={"path": path})
        except requests.exceptions.RequestException:
            return None
        encoded = head.headers.get("X-Docker-Container-Path-Stat") if head.status_code == 200 else None
        stat = json.loads(base64.b64decode(encoded)) if encoded else {}
        if not stat or int(stat.get("mode", 0)) & _NOT_REGULAR or int(stat.get("size", 0)) > max_bytes:
            return None
        try:
            stream, _ = handle.get_archive(path)
            archive = b"".join(stream)  # read to the end: a tar of the one file, about its size
        except (docker.errors.NotFound, docker.errors.APIError, requests.exceptions.RequestException):
            return None
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            extracted = tar.extractfile(member) if member else None
            return extracted.read() if extracted else None

    def save_images(self, refs: Sequence[str], chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """See :meth:`milabox.engine.Engine.save_images` (the contract documents it)."""
        api = self.client.api
        try:
            # docker-py wraps only the one-image export; the engine's /images/get takes several names.
            # No read timeout: the engine may prepare tens of GB before its first byte.
            res = api._get(api._url("/images/get"), params={"names": list(refs)}, stream=True, timeout=None)
            yield from api._stream_raw_result(res, chunk_size, False)  # raises for status
        except docker.errors.APIError as e:
            raise EngineError(f"the engine could not save {', '.join(refs)}: {explain(e)}") from None
        except requests.exceptions.RequestException as e:
            raise EngineError(f"the engine stopped while saving {', '.join(refs)}: {e}") from None

    def load_images(self, chunks: Iterable[bytes]) -> list[str]:
        """See :meth:`milabox.engine.Engine.load_images` (the contract documents it)."""
        api = self.client.api
        loaded: list[str] = []
        try:
            # No read timeout: the engine answers only once it has unpacked everything (quiet), which takes
            # minutes for images of tens of GB.
            res = api._post(api._url("/images/load"), data=chunks, params={"quiet": True}, stream=True, timeout=None)
            api._raise_for_status(res)
            for chunk in api._stream_helper(res, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    raise EngineError(f"the engine refused the images: {str(detail).strip()[:300]}")
                m = re.match(r"^Loaded image(?: ID)?: (.+)$", str(chunk.get("stream", "")).strip())
                if m:
                    loaded.append(m[1])
        except docker.errors.APIError as e:
            raise EngineError(f"the engine refused the images: {explain(e)}") from None
        except requests.exceptions.RequestException as e:
            raise EngineError(f"the engine stopped while loading images: {e}") from None
        return loaded

    def push_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """See :meth:`milabox.engine.Engine.push_image` (the contract documents it)."""
        return self._registry_stream("push", repository, tag, on_progress)

    def pull_image(self, repository: str, tag: str,
                   on_progress: Callable[[int, int], None] = lambda done, total: None) -> str:
        """See :meth:`milabox.engine.Engine.pull_image` (the contract documents it)."""
        return self._registry_stream("pull", repository, tag, on_progress)

    def _registry_stream(self, action: str, repository: str, tag: str,
                         on_progress: Callable[[int, int], None]) -> str:
        layers: dict[str, tuple[int, int]] = {}
        digest = ""
        try:
            call = self.client.api.push if action == "push" else self.client.api.pull
            for chunk in call(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    raise EngineError(f"{action} of {repository}:{tag} failed: {str(detail).strip()[:300]}")
                detail = chunk.get("progressDetail") or {}
                if chunk.get("id") and detail.get("total"):
                    layers[chunk["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                    on_progress(sum(c for c, _ in layers.values()), sum(t for _, t in layers.values()))
                aux = chunk.get("aux") or {}
                status = str(chunk.get("status", ""))
                m = re.search(r"sha256:[0-9a-f]{64}", str(aux.get("Digest") or ""))
                m = m or (re.search(r"sha256:[0-9a-f]{64}", status) if status.startswith("Digest:") else None)
                if m:
                    digest = m[0]
        except docker.errors.APIError as e:
            raise EngineError(f"{action} of {repository}:{tag} failed: {explain(e)}") from None
        except requests.exceptions.RequestException as e:
            raise EngineError(f"{action} of {repository}:{tag} failed: {e}") from None
        if not digest:
            raise EngineError(f"{action} of {repository}:{tag} ended without the registry's digest")
        return digest
