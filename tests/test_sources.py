"""Data on any machine: without a local copy, a loader downloads its files from their public sources (here
a loopback server serving small files in the real formats), checks each against its recorded SHA-256, and
keeps them in the cache; offline, or on a mismatch, the error says what to do."""

import gzip
import hashlib
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from moezoo.data import cache_dir, census_income, load_census_income, load_multi_mnist, multi_mnist
from moezoo.data.glue import GLUE_SOURCES
from moezoo.data.sources import DataSource, SourceFile, locate_dataset


class FileServer:
    """``with FileServer(files) as server:`` serves ``files`` (name -> bytes) at ``server.url/<name>``;
    any other path is a 404. Requests are recorded."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append(self.path)
                content = outer.files.get(self.path.lstrip("/"))
                self.send_response(200 if content is not None else 404)
                self.send_header("Content-Length", str(len(content or b"")))
                self.end_headers()
                self.wfile.write(content or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FileServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test downloads into a cache of its own, which no other test reads."""
    monkeypatch.setenv("MOEZOO_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def served_source(source: DataSource, contents: dict[str, bytes], url: str) -> DataSource:
    """``source`` with each file's checksum and address replaced by those of ``contents`` on ``url``."""
    return replace(source, files=tuple(
        replace(file, sha256=hashlib.sha256(contents[file.path]).hexdigest(), urls=(f"{url}/{file.path}",), text_sha256=None)
        for file in source.files
    ))


def test_the_recorded_checksums_are_those_of_the_provenance_files(data_dir):
    sources = [census_income.CENSUS_SOURCE, *multi_mnist.SOURCES.values()]
    for source in sources:
        for file in source.files:
            assert file.accepts((data_dir / source.folder / file.path).read_bytes()), (source.folder, file.path)
            assert file.urls, f"{source.folder}/{file.path} has no download address"
    for source in GLUE_SOURCES.values():
        for file in source.files:
            assert file.accepts((data_dir / "glue" / source.folder / file.path).read_bytes()), (source.folder, file.path)


def test_census_income_is_downloaded_checked_and_cached_when_no_copy_is_here(data_dir, tmp_path, monkeypatch, online):
    # The first 300 rows of each real file, in the real format (gzipped CSV).
    contents = {}
    for file in census_income.CENSUS_SOURCE.files:
        lines = gzip.decompress((data_dir / "census-income" / file.path).read_bytes()).splitlines(keepends=True)
        contents[file.path] = gzip.compress(b"".join(lines[:300]), mtime=0)
    with FileServer(contents) as server:
        monkeypatch.setattr(census_income, "CENSUS_SOURCE", served_source(census_income.CENSUS_SOURCE, contents, server.url))
        splits = load_census_income(tmp_path / "empty")
        assert len(splits["train"]) == 300 and len(splits["validation"]) + len(splits["test"]) == 300
        assert sorted(server.requests) == ["/census-income.data.gz", "/census-income.test.gz"]
        load_census_income(tmp_path / "empty")  # from the cache now: no second download
        assert len(server.requests) == 2
    assert (cache_dir() / "census-income" / "census-income.data.gz").read_bytes() == contents["census-income.data.gz"]


def test_multi_mnist_is_downloaded_in_the_idx_format(tmp_path, monkeypatch, online):
    rng = np.random.default_rng(0)

    def idx(array: np.ndarray) -> bytes:
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
        return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)

    contents = {
        "train-images-idx3-ubyte.gz": idx(rng.integers(0, 256, (40, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx(rng.integers(0, 10, 40)),
        "t10k-images-idx3-ubyte.gz": idx(rng.integers(0, 256, (12, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx(rng.integers(0, 10, 12)),
    }
    with FileServer(contents) as server:
        source = served_source(multi_mnist.SOURCES["fashion-mnist"], contents, server.url)
        monkeypatch.setitem(multi_mnist.SOURCES, "fashion-mnist", source)
        splits = load_multi_mnist(tmp_path / "empty", dataset="fashion-mnist", validation_size=8)
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [32, 8, 12]
    assert tuple(splits["train"][0]["pixel_values"].shape) == (1, 36, 36)


def test_a_download_that_does_not_match_its_checksum_is_refused_and_nothing_is_kept(tmp_path, online):
    with FileServer({"a.gz": gzip.compress(b"tampered", mtime=0)}) as server:
        source = DataSource("toy", (SourceFile("a.gz", "0" * 64, (f"{server.url}/missing.gz", f"{server.url}/a.gz")),), "https://example.org/toy")
        with pytest.raises(FileNotFoundError) as error:
            locate_dataset(source, tmp_path)
    message = str(error.value)
    assert "The toy files ['a.gz'] were not found" in message and "downloading them failed" in message
    assert f"{server.url}/missing.gz: Not Found" in message
    assert f"{server.url}/a.gz: the content does not match the recorded SHA-256 {'0' * 64}" in message
    assert "Download them from https://example.org/toy" in message
    assert not (cache_dir() / "toy").exists() or not any((cache_dir() / "toy").iterdir())


def test_a_copy_whose_gzip_wrapper_differs_is_accepted_by_its_text(tmp_path, online):
    text = b"39, Private, 1\n"
    recorded = gzip.compress(text, mtime=1)
    with FileServer({"t.gz": gzip.compress(text, mtime=2)}) as server:
        file = SourceFile("t.gz", hashlib.sha256(recorded).hexdigest(), (f"{server.url}/t.gz",), hashlib.sha256(text).hexdigest())
        folder = locate_dataset(DataSource("toy-text", (file,), "https://example.org"), tmp_path)
    assert gzip.decompress((folder / "t.gz").read_bytes()) == text


def test_offline_the_error_says_where_to_put_the_files(tmp_path):
    # The test session runs with HF_HUB_OFFLINE=1.
    with pytest.raises(FileNotFoundError, match=r"were not found \(looked in: .*\), and downloads are off \(HF_HUB_OFFLINE\)\. "
                       r"Download them from http://yann\.lecun\.com/exdb/mnist/"):
        load_multi_mnist(tmp_path, dataset="mnist")
