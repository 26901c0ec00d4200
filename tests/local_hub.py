"""A Hub endpoint on 127.0.0.1 for tests: the HTTP calls `huggingface_hub` makes to create a model
repository, commit files to it (regular files inline, LFS files through the basic LFS transfer) and
download them back, answered from memory.

What it checks as the Hub does: every request that writes, and every request that sends a token,
carries the hub's token (``Authorization: Bearer``), else 401; a commit that names a ``parentCommit`` other
than the branch's head is refused with 412; LFS files are downloaded as from the Hub, through a redirect to
another host (``localhost`` instead of ``127.0.0.1``: the client does not follow it for the metadata) with
the file's ``X-Linked-Etag`` and ``X-Linked-Size``, and the client must not send its token there.

What it does not cover: Xet storage (its write-token route answers 501, as an endpoint without Xet does;
`moezoo push` then falls back to LFS), more than one branch, pull requests, private repositories, the
multipart LFS transfer, rate limits. Any request it does not know is answered 501 and recorded in
``unhandled`` so that a test fails on it instead of passing by accident.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from huggingface_hub import ModelCard

#: Files the Hub stores through LFS rather than in git (as its default .gitattributes does).
LFS_SUFFIXES = (".safetensors", ".bin", ".png", ".jpg", ".pt", ".h5", ".msgpack", ".parquet")
REPO_ID = r"(?P<repo>[\w.-]+/[\w.-]+)"
#: The repository type in API routes, and its prefix in file routes (model repositories have none).
KIND = r"(?P<kind>models|datasets)"
PREFIX = r"(?P<prefix>datasets/)?"
#: The token the hub accepts unless another is given.
TOKEN = "hf_local_test_token"


@dataclass
class Repository:
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


@dataclass
class HubState:
    repositories: dict[str, Repository] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    #: Requests refused for their credentials, and LFS downloads that carried a token to the storage host.
    refused: list[str] = field(default_factory=list)
    leaked_tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalHub:
    """``with LocalHub() as hub:`` serves on ``hub.endpoint`` until the block ends."""

    def __init__(self, token: str = TOKEN) -> None:
        self.state = HubState()
        handler = type("Handler", (_HubRequestHandler,), {"state": self.state, "token": token})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.endpoint = self.endpoint
        # LFS files are served from "another host", as the Hub redirects them to its storage.
        handler.storage = f"http://localhost:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _HubRequestHandler(BaseHTTPRequestHandler):
    state: HubState
    endpoint: str
    storage: str
    token: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # the record in `state.requests` is the log

    # -- routing --------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("POST", "PUT") else b""
        with self.state.lock:
            self.state.requests.append(f"{method} {path}")
        if path.startswith("/lfs-files/"):
            return self._lfs_download(path.removeprefix("/lfs-files/"), head_only=method == "HEAD")
        if not self._authorised(method, path):
            return
        routes = [
            ("GET", r"/api/agent-harnesses", self._agent_harnesses),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", rf"/api/{KIND}/{REPO_ID}/preupload/(?P<revision>[^/]+)", self._preupload),
            ("POST", rf"/{PREFIX}{REPO_ID}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self._lfs_upload),
            ("POST", rf"/api/{KIND}/{REPO_ID}/commit/(?P<revision>[^/]+)", self._commit),
            ("GET", rf"/api/{KIND}/{REPO_ID}(?:/revision/(?P<revision>[^/]+))?", self._repo_info),
            ("GET", rf"/api/{KIND}/{REPO_ID}/tree/(?P<revision>[^/]+)(?:/(?P<folder>.+))?", self._repo_tree),
            ("HEAD", rf"/{PREFIX}{REPO_ID}/resolve/(?P<revision>[^/]+)/(?P<filename>.+)", self._resolve),
            ("GET", rf"/{PREFIX}{REPO_ID}/resolve/(?P<revision>[^/]+)/(?P<filename>.+)", self._resolve),
        ]
        for route_method, pattern, handle in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                groups = {key: value for key, value in match.groupdict().items() if value is not None}
                kind, prefix = groups.pop("kind", "models"), groups.pop("prefix", "")
                if "repo" in groups and (kind == "datasets" or prefix):
                    groups["repo"] = f"datasets/{groups['repo']}"  # dataset repositories are kept apart
                handle(body=body, **groups)
                return
        with self.state.lock:
            self.state.unhandled.append(f"{method} {path}")
        self._send_json({"error": f"not implemented: {method} {path}"}, status=501)

    def _authorised(self, method: str, path: str) -> bool:
        """A request that writes, or that sends a token at all, must send the hub's token; a public read may
        send none. Otherwise 401, as the Hub answers."""
        given = self.headers.get("Authorization")
        # The LFS upload URL is its own credential (a pre-signed storage URL on the Hub); validating a card needs none.
        writes = method in ("POST", "PUT") and path != "/api/validate-yaml" and not path.startswith("/lfs-upload/")
        if given == f"Bearer {self.token}" or (given is None and not writes):
            return True
        with self.state.lock:
            self.state.refused.append(f"{method} {path}")
        message = "Invalid credentials in Authorization header" if given else "Invalid username or password."
        body = json.dumps({"error": message}).encode()
        self._send(401, body, {"Content-Type": "application/json", "X-Error-Message": message}, method == "HEAD")
        return False

    # -- answers --------------------------------------------------------------------------------------

    def _send(self, status: int, payload: bytes, headers: dict[str, str], head_only: bool = False) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(payload)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(payload)

    def _send_json(self, payload: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _not_found(self, code: str, message: str, head_only: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        self._send(404, body, headers, head_only)

    def _repository(self, repo: str) -> Repository | None:
        return self.state.repositories.get(repo)

    def _agent_harnesses(self, body: bytes) -> None:
        self._send_json({"standardEnvVars": [], "harnesses": {}})  # the client's user-agent registry: empty

    def _validate_yaml(self, body: bytes) -> None:
        """A card's metadata must parse, and its model-index too (through huggingface_hub's own parser,
        which `ModelCard` applies)."""
        errors = []
        try:
            ModelCard(json.loads(body)["content"])
        except Exception as error:  # every failure is the card's error, reported as the Hub reports it
            errors.append({"message": f"{type(error).__name__}: {error}"})
        self._send_json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def _create_repo(self, body: bytes) -> None:
        request = json.loads(body)
        repo = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
        if request.get("type") == "dataset":
            repo = f"datasets/{repo}"
        with self.state.lock:
            self.state.repositories.setdefault(repo, Repository())
        self._send_json({"url": f"{self.endpoint}/{repo}", "name": repo})

    def _preupload(self, body: bytes, repo: str, revision: str) -> None:
        if self._repository(repo) is None:
            return self._not_found("RepoNotFound", f"Repository {repo} not found")
        files = json.loads(body)["files"]
        modes = [
            {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular", "shouldIgnore": False}
            for f in files
        ]
        self._send_json({"files": modes})

    def _lfs_batch(self, body: bytes, repo: str) -> None:
        objects = []
        for item in json.loads(body)["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.storage}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        self._send_json({"transfer": "basic", "objects": objects})

    def _lfs_upload(self, body: bytes, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._send_json({"error": "sha256 mismatch"}, status=400)
        with self.state.lock:
            self.state.lfs_objects[oid] = body
        self._send(200, b"", {})

    def _commit(self, body: bytes, repo: str, revision: str) -> None:
        repository = self._repository(repo)
        if repository is None:
            return self._not_found("RepoNotFound", f"Repository {repo} not found")
        changes: dict[str, bytes | None] = {}
        for line in body.decode().splitlines():
            record = json.loads(line)
            key, value = record["key"], record["value"]
            if key == "header" and value.get("parentCommit") not in (None, repository.head):
                message = "A commit has happened since. Please refresh and try again."
                return self._send_json({"error": message}, status=412, headers={"X-Error-Message": message})
            if key == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.state.lfs_objects:
                    return self._send_json({"error": f"LFS object {value['oid']} was never uploaded"}, status=422)
                changes[value["path"]] = self.state.lfs_objects[value["oid"]]
            elif key == "deletedFile":
                changes[value["path"]] = None
        with self.state.lock:
            for path, content in changes.items():
                if content is None:
                    repository.files.pop(path, None)
                else:
                    repository.files[path] = content
            digest = hashlib.sha1(repository.head.encode())
            for path in sorted(repository.files):
                digest.update(path.encode() + hashlib.sha256(repository.files[path]).digest())
            repository.commits.append(digest.hexdigest())
        self._send_json({"commitOid": repository.head, "commitUrl": f"{self.endpoint}/{repo}/commit/{repository.head}"})

    def _repo_info(self, body: bytes, repo: str, revision: str = "main") -> None:
        repository = self._repository(repo)
        if repository is None:
            return self._not_found("RepoNotFound", f"Repository {repo} not found")
        siblings = [{"rfilename": path, "size": len(content)} for path, content in sorted(repository.files.items())]
        name = repo.removeprefix("datasets/")
        self._send_json({"id": name, "modelId": name, "sha": repository.head, "private": False, "siblings": siblings})

    def _repo_tree(self, body: bytes, repo: str, revision: str, folder: str | None = None) -> None:
        """The entries of ``folder`` (the root when not given; a folder without files does not exist, as on the
        Hub), in one page: its files and sub-folders, or with ``recursive=true`` every file below it."""
        repository = self._repository(repo)
        if repository is None:
            return self._not_found("RepoNotFound", f"Repository {repo} not found")
        prefix = f"{folder}/" if folder else ""
        files = {path: content for path, content in repository.files.items() if path.startswith(prefix)}
        if folder is not None and not files:
            return self._not_found("EntryNotFound", f"{folder} does not exist on {revision}")
        recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0].lower() == "true"
        tree, folders = [], set()
        for path, content in sorted(files.items()):
            rest = path.removeprefix(prefix)
            if not recursive and "/" in rest:
                folders.add(prefix + rest.split("/")[0])
                continue
            entry = {"type": "file", "path": path, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            tree.append(entry)
        tree += [{"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()} for path in sorted(folders)]
        self._send_json(tree)

    def _resolve(self, body: bytes, repo: str, revision: str, filename: str) -> None:
        head_only = self.command == "HEAD"
        repository = self._repository(repo)
        if repository is None:
            return self._not_found("RepoNotFound", f"Repository {repo} not found", head_only)
        if revision not in ("main", repository.head):
            return self._not_found("RevisionNotFound", f"Revision {revision} not found", head_only)
        if filename not in repository.files:
            return self._not_found("EntryNotFound", f"{filename} does not exist in {repo}", head_only)
        content = repository.files[filename]
        if filename.endswith(LFS_SUFFIXES):  # as the Hub does: a redirect to the storage, the file's identity in headers
            oid = hashlib.sha256(content).hexdigest()
            headers = {
                "X-Repo-Commit": repository.head, "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(len(content)),
                "ETag": f'"{hashlib.sha1(content).hexdigest()}"', "Location": f"{self.storage}/lfs-files/{oid}",
            }
            return self._send(302, b"", headers, head_only)
        headers = {"X-Repo-Commit": repository.head, "ETag": f'"{hashlib.sha1(content).hexdigest()}"'}
        self._send(200, content, headers, head_only)

    def _lfs_download(self, oid: str, head_only: bool) -> None:
        """The storage host: serves an LFS object by its sha256 to anyone (its URL is the credential), and
        records a client that sent its Hub token here."""
        if self.headers.get("Authorization"):
            with self.state.lock:
                self.state.leaked_tokens.append(oid)
        if oid not in self.state.lfs_objects:
            return self._not_found("EntryNotFound", f"no LFS object {oid}", head_only)
        content = self.state.lfs_objects[oid]
        self._send(200, content, {"ETag": f'"{oid}"'}, head_only)
