"""fsspec storage helpers: every location in edn is a URL (local path, gs://, memory://)."""
from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow.fs

if TYPE_CHECKING:
    import fsspec


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    # fsspec imported here, on first use: edn.train.loop's imports reach this module, and
    # edn.bench.gpu_check must import that where fsspec is absent
    from fsspec.core import url_to_fs
    return url_to_fs(url)


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return fs.cat_file(path)


def local_folder(url: str) -> str | None:
    """`url` as a folder on this machine's filesystem, if it is one (a path or a file: URL)."""
    parsed = urllib.parse.urlparse(url)
    path = parsed.path if parsed.scheme == "file" else None if parsed.scheme else url
    return path if path and os.path.isdir(path) else None


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def for_arrow(urls: list[str]) -> tuple[pyarrow.fs.FileSystem | None, list[str]]:
    """URLs on one filesystem as Ray Data and Ray Train take them: (filesystem, paths in it).

    Given a bare gs:// URL they would use pyarrow's own GCS client, which ignores fsspec's
    settings (STORAGE_EMULATOR_HOST, FSSPEC_GS_TOKEN, gcsfs credentials) and so can reach a
    different store than the rest of edn, or none; the fsspec filesystem is handed over instead.
    Local paths are left to Ray (None)."""
    fs, _ = filesystem(urls[0])
    if _is_local(fs):
        return None, list(urls)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs)), [filesystem(u)[1] for u in urls]


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Readers see the old object or the whole new one, never a partial write.

    Local files are written beside the target and renamed; object stores (gs://,
    memory://) publish an object only once its upload completes.
    """
    fs, path = filesystem(url)
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if _is_local(fs):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def put_file_atomic(local_path: str, url: str) -> None:
    """Publish a finished local file at `url` atomically (see write_bytes_atomic)."""
    fs, path = filesystem(url)
    if _is_local(fs):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(local_path, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        os.replace(tmp, path)
    else:
        fs.put_file(local_path, path)


@contextlib.contextmanager
def written_locally(url: str) -> Iterator[str]:
    """A local path to write `url`'s new content at (a library that writes local files only,
    such as pyarrow's ParquetWriter); published at `url` (put_file_atomic) when the block ends
    without an error, and never otherwise."""
    with tempfile.TemporaryDirectory(prefix="edn-write-") as tmp:
        local = os.path.join(tmp, os.path.basename(url.rstrip("/")) or "file")
        yield local
        put_file_atomic(local, url)
