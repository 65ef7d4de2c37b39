"""A small Hugging Face Hub stand-in for tests: a threaded HTTP server on 127.0.0.1.

It implements what ``huggingface_hub`` (2.x, httpx transport), ``transformers`` and ``datasets``
use to push a folder in one commit and to download or stream it again: whoami, repo creation,
repo info, tree listing, paths-info, YAML validation, preupload, the LFS batch API and uploads,
commits (ndjson), and ``resolve`` downloads with the headers the client checks (HTTP ranges
too, which streaming reads use). Model, dataset and Space repos are kept apart: ``repos`` holds
models under ``owner/name``, datasets under ``datasets/owner/name`` and Spaces under
``spaces/owner/name``. Repos have an owner and a visibility; writes need the owner's token,
reads of private repos too.

Use it from a subprocess that has ``HF_ENDPOINT`` set before huggingface_hub is imported
(:func:`hub_env` builds that environment)::

    with HubServer(tokens={"secret": "user"}) as hub:
        subprocess.run([sys.executable, "-c", code], env=hub_env(hub, tmp_path, token="secret"))
        assert hub.repos["user/model"].private
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".model", ".npy")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def repo_key(repo_id: str, repo_type: str = "model") -> str:
    """The key of a repo in :attr:`HubServer.repos`: ``owner/name`` for models, ``datasets/owner/name`` ..."""
    return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    files: dict[str, StoredFile] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)
    repo_type: str = "model"
    sdk: str | None = None

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"]


@dataclass
class Request:
    method: str
    path: str
    user: str | None
    status: int


class HubServer:
    """The server and its state. ``tokens`` maps token -> user name.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        repos: repo id -> :class:`Repo`.
        requests: every request seen (method, path, authenticated user, status).
        create_payloads: the JSON bodies of repo-creation requests.
    """

    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = dict(tokens or {})
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[Request] = []
        self.create_payloads: list[dict] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "HubServer":
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ state helpers
    def add_repo(self, repo_id: str, owner: str, *, private: bool = False, files: dict[str, bytes] | None = None,
                 repo_type: str = "model", sdk: str | None = None) -> Repo:
        """Pre-seed a repo (e.g. one that belongs to someone else)."""
        with self.lock:
            repo = Repo(repo_id, owner, private, repo_type=repo_type, sdk=sdk)
            repo.files[".gitattributes"] = StoredFile(GITATTRIBUTES, False)
            for path, content in (files or {}).items():
                repo.files[path] = StoredFile(content, path.endswith(LFS_SUFFIXES))
            repo.commits.append(_commit_record("initial commit", repo.files))
            self.repos[repo_key(repo_id, repo_type)] = repo
            return repo


def _commit_record(message: str, files: dict[str, StoredFile]) -> dict:
    h = hashlib.sha1(message.encode() + str(time.time_ns()).encode())
    for path in sorted(files):
        h.update(path.encode() + files[path].git_sha1.encode())
    return {"oid": h.hexdigest(), "message": message, "files": sorted(files)}


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, **extra):
        self.status, self.message, self.error_code, self.extra = status, message, error_code, extra


class _Handler(BaseHTTPRequestHandler):
    state: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    # ------------------------------------------------------------------ plumbing
    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):].strip()
            user = self.state.tokens.get(token)
            if user is None:
                raise _HTTPError(401, "Invalid credentials in Authorization header")
            return user
        return None

    def _body(self) -> bytes:
        # Read once, first thing: an unread body would corrupt the next keep-alive request.
        if getattr(self, "_cached_body", None) is None:
            self._cached_body = self._read_body()
        return self._cached_body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes | dict | list | None = None, headers: dict | None = None, head: bool = False):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            content_type = "application/json"
        else:
            data = body or b""
            content_type = "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _dispatch(self, method: str):
        parsed = urlparse(self.path)
        path = unquote(parsed.path)
        query = parse_qs(parsed.query)
        user = None
        status = 500
        self._cached_body = None
        try:
            self._body()
            user = self._user()
            status = self._route(method, path, query, user)
        except _HTTPError as e:
            status = e.status
            headers = {"X-Error-Message": e.message}
            if e.error_code:
                headers["X-Error-Code"] = e.error_code
            if method == "HEAD":
                self._send(e.status, None, headers, head=True)
            else:
                self._send(e.status, {"error": e.message, **e.extra}, headers)
        finally:
            with self.state.lock:
                self.state.requests.append(Request(method, path, user, status))

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ------------------------------------------------------------------ routes
    def _route(self, method, path, query, user) -> int:
        parts = [p for p in path.split("/") if p]
        st = self.state
        if method == "GET" and path == "/api/whoami-v2":
            if user is None:
                raise _HTTPError(401, "Invalid username or password.")
            self._send(200, {"type": "user", "name": user, "fullname": user, "orgs": [],
                             "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})
            return 200
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(user)
        if method == "POST" and path == "/api/validate-yaml":
            self._body()
            self._send(200, {"errors": [], "warnings": []})
            return 200
        if method == "PUT" and len(parts) == 2 and parts[0] == "lfs-upload":
            data = self._body()
            if hashlib.sha256(data).hexdigest() != parts[1]:
                raise _HTTPError(400, "sha256 mismatch")
            with st.lock:
                st.lfs_objects[parts[1]] = data
            self._send(200, b"")
            return 200
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_TYPES:
            key = repo_key(f"{parts[2]}/{parts[3]}", REPO_TYPES[parts[1]])
            rest = parts[4:]
            if method == "GET" and (not rest or rest[0] == "revision"):
                return self._repo_info(key, user, "/".join(rest[1:]) or "main")
            if method == "GET" and rest and rest[0] == "tree":
                return self._tree(key, user, rest[1] if len(rest) > 1 else "main", "/".join(rest[2:]), "recursive" in query)
            if method == "POST" and rest and rest[0] == "paths-info":
                return self._paths_info(key, user, "/".join(rest[1:]))
            if method == "POST" and rest and rest[0] == "preupload":
                return self._preupload(key, user)
            if method == "POST" and rest and rest[0] == "commit":
                return self._commit(key, user, "/".join(rest[1:]))
        prefix_type, repo_parts = "model", parts
        if parts and parts[0] in ("datasets", "spaces"):
            prefix_type, repo_parts = REPO_TYPES[parts[0]], parts[1:]
        if method == "POST" and len(repo_parts) == 6 and repo_parts[1].endswith(".git") and repo_parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_key(f"{repo_parts[0]}/{repo_parts[1][:-4]}", prefix_type), user)
        if method in ("GET", "HEAD") and len(repo_parts) >= 5 and repo_parts[2] == "resolve":
            key = repo_key(f"{repo_parts[0]}/{repo_parts[1]}", prefix_type)
            return self._resolve(key, user, repo_parts[3], "/".join(repo_parts[4:]), head=method == "HEAD")
        raise _HTTPError(404, f"no route for {method} {path}")

    def _repo(self, key: str, user: str | None, write: bool = False) -> Repo:
        repo = self.state.repos.get(key)
        if repo is None or (repo.private and user != repo.owner):
            raise _HTTPError(404 if user else 401, "Repository not found", "RepoNotFound")
        if write and user != repo.owner:
            raise _HTTPError(403 if user else 401, f"You don't have the rights to write to {repo.repo_id}")
        return repo

    def _revision(self, repo: Repo, revision: str) -> None:
        if unquote(revision) not in ("main", repo.sha):
            raise _HTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _create_repo(self, user) -> int:
        payload = json.loads(self._body() or b"{}")
        with self.state.lock:
            self.state.create_payloads.append(payload)
        if user is None:
            raise _HTTPError(401, "You must be authenticated to create a repo")
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        key = repo_key(repo_id, repo_type)
        url = f"{self.state.url}/{key}"
        if namespace != user:
            raise _HTTPError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"')
        if key in self.state.repos:
            # The Hub names the existing repo's URL; create_repo(exist_ok=True) returns it.
            raise _HTTPError(409, f"You already created this {repo_type} repo", url=url)
        if repo_type == "space" and not payload.get("sdk"):
            raise _HTTPError(400, "A Space needs an sdk (gradio, docker, static)")
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.state.add_repo(repo_id, user, private=private, repo_type=repo_type, sdk=payload.get("sdk"))
        self._send(200, {"url": url, "name": repo_id, "id": repo_id})
        return 200

    def _repo_info(self, key, user, revision="main") -> int:
        repo = self._repo(key, user)
        self._revision(repo, revision)
        with self.state.lock:
            body = {
                "_id": hashlib.md5(key.encode()).hexdigest()[:24], "id": repo.repo_id,
                "author": repo.owner, "sha": repo.sha, "private": repo.private, "disabled": False, "gated": False,
                "downloads": 0, "likes": 0, "tags": [], "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
            if repo.repo_type == "model":
                body["modelId"] = repo.repo_id
            if repo.repo_type == "space":
                body.update(sdk=repo.sdk, runtime={"stage": "BUILDING", "hardware": {"current": None, "requested": "cpu-basic"}})
        self._send(200, body)
        return 200

    def _entry(self, path: str, f: StoredFile) -> dict:
        entry = {"type": "file", "path": path, "size": len(f.content), "oid": f.git_sha1}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": len(f.content), "pointerSize": 134}
        return entry

    def _tree(self, key, user, revision, prefix, recursive) -> int:
        repo = self._repo(key, user)
        self._revision(repo, revision)
        prefix = prefix.strip("/")
        entries, dirs = [], set()
        with self.state.lock:
            for p, f in sorted(repo.files.items()):
                if prefix and not p.startswith(prefix + "/"):
                    continue
                rel = p[len(prefix) + 1:] if prefix else p
                parents = rel.split("/")[:-1]
                if parents and not recursive:
                    dirs.add((prefix + "/" if prefix else "") + parents[0])
                    continue
                # A recursive listing names every folder on the way too, as the Hub does.
                dirs.update((prefix + "/" if prefix else "") + "/".join(parents[: i + 1]) for i in range(len(parents)))
                entries.append(self._entry(p, f))
        if prefix and not entries and not dirs:
            raise _HTTPError(404, f"{prefix} does not exist", "EntryNotFound")
        entries += [{"type": "directory", "path": d, "size": 0, "oid": "0" * 40} for d in sorted(dirs)]
        self._send(200, entries)
        return 200

    def _paths_info(self, key, user, revision) -> int:
        repo = self._repo(key, user)
        self._revision(repo, revision)
        body = self._body().decode()
        form = parse_qs(body) if not body.lstrip().startswith("{") else json.loads(body)
        paths = form.get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        out = []
        with self.state.lock:
            for path in (p.strip("/") for p in paths):
                if path in repo.files:
                    out.append(self._entry(path, repo.files[path]))
                elif any(p.startswith(path + "/") for p in repo.files) or path == "":
                    out.append({"type": "directory", "path": path, "size": 0, "oid": "0" * 40})
        self._send(200, out)
        return 200

    def _preupload(self, key, user) -> int:
        payload = json.loads(self._body() or b"{}")
        repo = self._repo(key, user, write=True)
        files = []
        for f in payload.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or f.get("size", 0) > 10_000_000
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": None})
        self._send(200, {"files": files, "commitOid": repo.sha})
        return 200

    def _lfs_batch(self, key, user) -> int:
        payload = json.loads(self._body() or b"{}")
        self._repo(key, user, write=True)
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.state.url}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
        return 200

    def _commit(self, key, user, revision) -> int:
        body = self._body()
        repo = self._repo(key, user, write=True)
        self._revision(repo, revision)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        with self.state.lock:
            files = dict(repo.files)
            for line in lines:
                kind, value = line["key"], line["value"]
                if kind == "file":
                    content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                    files[value["path"]] = StoredFile(content, False)
                elif kind == "lfsFile":
                    data = self.state.lfs_objects.get(value["oid"])
                    if data is None:
                        raise _HTTPError(422, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = StoredFile(data, True)
                elif kind == "deletedFile":
                    files.pop(value["path"], None)
                elif kind == "deletedFolder":
                    for p in [p for p in files if p.startswith(value["path"].rstrip("/") + "/")]:
                        files.pop(p)
            repo.files = files
            record = _commit_record(header.get("summary", ""), files)
            record["description"] = header.get("description", "")
            repo.commits.append(record)
        self._send(200, {"success": True, "commitOid": record["oid"], "commitUrl": f"{self.state.url}/{key}/commit/{record['oid']}", "pullRequestUrl": None})
        return 200

    def _resolve(self, key, user, revision, filename, head) -> int:
        repo = self._repo(key, user)
        with self.state.lock:
            self._revision(repo, revision)
            stored = repo.files.get(filename)
            sha = repo.sha
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if stored is None:
            headers["X-Error-Code"] = "EntryNotFound"
            headers["X-Error-Message"] = "Entry not found"
            self._send(404, None if head else {"error": "Entry not found"}, headers, head=head)
            return 404
        etag = stored.sha256 if stored.lfs else stored.git_sha1
        headers["ETag"] = f'"{etag}"'
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = len(stored.content)
        content, status = stored.content, 200
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and "," not in wanted:
            # Streaming readers ask for byte ranges of large files.
            first, _, last = wanted[len("bytes="):].partition("-")
            size = len(content)
            begin = int(first) if first else max(size - int(last), 0)
            end = min(int(last), size - 1) if first and last else size - 1
            headers["Content-Range"] = f"bytes {begin}-{end}/{size}"
            content, status = content[begin : end + 1], 206
        self._send(status, content, headers, head=head)
        return status


def hub_env(hub: HubServer, home, token: str | None = None, **extra) -> dict[str, str]:
    """Environment for a subprocess that talks to ``hub``: endpoint, token, HF_HOME, no Xet, online."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(Path(home) / "hf_home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    env.update({k: str(v) for k, v in extra.items()})
    return env
