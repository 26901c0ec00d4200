"""Where each data set's files come from, how they are checked, and where a download is kept.

Every loader first looks for a local copy (``data_dir``, ``$MOEZOO_DATA_DIR`` or ``../shared/data``). When
there is none, the files are downloaded from their public sources, each verified against the SHA-256 that
the data set's provenance records (of the file, or of its decompressed text for a file whose gzip wrapper
differs between copies), and kept in ``$MOEZOO_CACHE/data/<data set>/`` (default ``~/.cache/moezoo``).
With ``HF_HUB_OFFLINE=1`` or no connection, the error says where to put the files by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .paths import DATA_DIR_ENV, default_data_dir

CACHE_ENV = "MOEZOO_CACHE"
#: Seconds a download may wait for the server before it is given up.
DOWNLOAD_TIMEOUT = 60


@dataclass(frozen=True)
class SourceFile:
    """One file of a data set, as its provenance records it.

    Attributes:
        path: The file's path inside the data set's folder.
        sha256: SHA-256 of the file as the data folder holds it.
        urls: Public addresses it can be downloaded from, tried in order.
        text_sha256: For a gzipped file, SHA-256 of its decompressed text: a download whose bytes differ only
            in the gzip wrapper (a file name or time stamp in its header) is accepted by this.
    """

    path: str
    sha256: str
    urls: tuple[str, ...] = ()
    text_sha256: str | None = None

    def accepts(self, content: bytes) -> bool:
        """Whether ``content`` is this file (by its own digest, or by its decompressed text's)."""
        if hashlib.sha256(content).hexdigest() == self.sha256:
            return True
        if self.text_sha256 is None:
            return False
        try:
            return hashlib.sha256(gzip.decompress(content)).hexdigest() == self.text_sha256
        except (OSError, EOFError):  # not gzip at all
            return False


@dataclass(frozen=True)
class DataSource:
    """A data set's files and where they come from.

    Attributes:
        folder: The data set's folder name under a data folder (``census-income``, ``mnist``).
        files: Its files.
        homepage: Where a person reads about it and downloads it by hand.
    """

    folder: str
    files: tuple[SourceFile, ...]
    homepage: str

    @property
    def file_names(self) -> list[str]:
        return [file.path for file in self.files]


def cache_dir() -> Path:
    """Where downloaded data sets are kept: ``$MOEZOO_CACHE/data`` (default ``~/.cache/moezoo/data``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "moezoo") / "data"


def _complete(folder: Path, source: DataSource) -> bool:
    return all((folder / name).is_file() for name in source.file_names)


def local_copy(source: DataSource, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder of a local copy of ``source``'s files (``data_dir/<folder>`` or ``data_dir`` itself; without
    ``data_dir``, the default data folder), or of a complete earlier download; ``None`` when there is none."""
    for folder in (*_search_folders(source, data_dir), cache_dir() / source.folder):
        if _complete(folder, source):
            return folder
    return None


def _search_folders(source: DataSource, data_dir: str | os.PathLike | None) -> list[Path]:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return [root / source.folder, root] if root is not None else []


def missing_files_error(source: DataSource, data_dir: str | os.PathLike | None, why: str) -> FileNotFoundError:
    """The error for ``source``'s files missing here: where they were looked for, ``why`` they could not be
    fetched, and how to put them in place by hand."""
    searched = _search_folders(source, data_dir)
    where = ", ".join(map(str, searched)) if searched else f"no data folder (${DATA_DIR_ENV} unset, no ../shared/data)"
    return FileNotFoundError(
        f"The {source.folder} files {source.file_names} were not found (looked in: {where}), and {why}. Download them "
        f"from {source.homepage}, put them in a folder '{source.folder}/', and pass its parent as data_dir= (or "
        f"--data_dir), or set ${DATA_DIR_ENV}."
    )


def downloads_allowed() -> bool:
    """Whether loaders may download: not with ``HF_HUB_OFFLINE=1``, as the Hugging Face libraries."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes")


def locate_dataset(source: DataSource, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder holding ``source``'s files: a local copy (`local_copy`), else the download cache, filled from
    the files' public sources when ``download`` (and `downloads_allowed`) allow it.

    Raises:
        FileNotFoundError: no local copy, and the files could not be downloaded (offline, no source, or a
            download that does not match its recorded checksum); the message says where to put them by hand.
    """
    folder = local_copy(source, data_dir)
    if folder is not None:
        return folder
    if not downloads_allowed():
        raise missing_files_error(source, data_dir, "downloads are off (HF_HUB_OFFLINE)")
    if not download:
        raise missing_files_error(source, data_dir, "downloading them was not asked for")
    cached = cache_dir() / source.folder
    try:
        for file in source.files:
            if not (cached / file.path).is_file():
                _download(file, cached / file.path)
    except OSError as error:
        raise missing_files_error(source, data_dir, f"downloading them failed: {error}") from error
    return cached


def _download(file: SourceFile, target: Path) -> None:
    """Fetch ``file`` from the first of its sources that answers with the recorded content, into ``target``
    (written under a temporary name, so an interrupted download leaves nothing behind)."""
    if not file.urls:
        raise OSError(f"{file.path} has no public source to download it from")
    failures = []
    for url in file.urls:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                chunks = []
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {file.path}", leave=False) as bar:
                    while chunk := response.read(1 << 20):
                        chunks.append(chunk)
                        bar.update(len(chunk))
        except OSError as error:  # URLError, HTTPError and timeouts are OSErrors
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
            continue
        content = b"".join(chunks)
        if not file.accepts(content):
            failures.append(f"{url}: the content does not match the recorded SHA-256 {file.sha256}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as temporary:
            temporary.write(content)
        os.replace(temporary.name, target)
        return
    raise OSError("; ".join(failures))
