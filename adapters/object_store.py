"""Object-store locations through fsspec (s3fs for ``s3://``): list, read, write, copy directories,
and let DuckDB open URLs through the same filesystem.

A location is a local ``Path`` or a URL string (``churn.settings.Location``). Credentials and the
endpoint come from the standard ``AWS_*`` variables, which s3fs reads itself (``AWS_ENDPOINT_URL``
points it at an S3-compatible store such as the prod profile's stand-in). DuckDB's own httpfs
extension is not used: it cannot be installed offline, and a registered fsspec filesystem reads
the same URLs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from churn.settings import Location, is_url


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it (no protocol, no trailing '/')."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def join(location: Location, *parts: str) -> Location:
    """``location / part / ...`` for a path or a URL."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return Path(location).joinpath(*parts)


def exists(location: Location) -> bool:
    if not is_url(location):
        return Path(location).exists()
    fs, root = filesystem(str(location))
    return bool(fs.exists(root))


def read_bytes(location: Location) -> bytes:
    if not is_url(location):
        return Path(location).read_bytes()
    fs, root = filesystem(str(location))
    return bytes(fs.cat_file(root))


def write_bytes(location: Location, data: bytes) -> None:
    """One object (a single PUT: readers see the old or the new bytes), or a file."""
    if not is_url(location):
        Path(location).write_bytes(data)
        return
    fs, root = filesystem(str(location))
    fs.pipe_file(root, data)


def glob(pattern: str) -> list[str]:
    """The URLs matching ``pattern`` (an ``s3://`` URL with wildcards), sorted."""
    fs, root = filesystem(pattern)
    return sorted(fs.unstrip_protocol(p) for p in fs.glob(root))


def digest(location: Location) -> str:
    """sha256 of a file's or object's bytes, streamed."""
    if not is_url(location):
        with open(location, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    fs, root = filesystem(str(location))
    with fs.open(root, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def upload_dir(local: Path, url: str) -> list[str]:
    """Every file under ``local`` to the same relative key under ``url``; the keys written."""
    fs, root = filesystem(url)
    written = []
    for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
        key = f"{root}/{path.relative_to(local).as_posix()}"
        fs.put_file(str(path), key)
        written.append(key)
    return written


def download_dir(url: str, local: Path) -> int:
    """Every object under ``url`` to the same relative path under ``local``; the count."""
    fs, root = filesystem(url)
    count = 0
    for key in sorted(fs.find(root)):
        target = Path(local) / key[len(root) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
        count += 1
    return count


def remove_dir(url: str) -> None:
    """Every object under ``url`` (nothing when there is none)."""
    fs, root = filesystem(url)
    found = fs.find(root)
    if found:
        fs.rm(found)


def register(con: Any, locations: list[str] | list[Location]) -> None:
    """Let DuckDB connection ``con`` open these URLs through fsspec (once per protocol)."""
    for location in locations:
        if not is_url(location):
            continue
        fs, _ = filesystem(str(location))
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if not protocols & set(con.list_filesystems()):
            con.register_filesystem(fs)
