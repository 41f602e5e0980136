"""A local stand-in for the Hugging Face Hub: just enough HTTP API for upload and download.

The real `huggingface_hub` client talks to it over HTTP (a `ThreadingHTTPServer` on 127.0.0.1), so
tests exercise the client's own requests on whichever version is installed. Every request is
recorded for assertions. Files are always "regular" (base64 in the commit), so no LFS or Xet.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_API = re.compile(
    r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<action>preupload|commit|revision|tree|branch)/(?P<rev>[^/]+)(?:/(?P<rest>.*))?)?"
)
_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, bytes]  # the whole tree after this commit


@dataclass
class Repo:
    private: bool
    branches: dict[str, list[Commit]] = field(default_factory=dict)  # branch -> history, newest last


def git_blob_id(content: bytes) -> str:
    """The git object id of a file: what the Hub sends as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """Serve the Hub API on `url` until `close()`; `requests` and `repos` record what happened."""

    def __init__(self):
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

            def do_GET(self):
                hub._handle(self)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args):  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str, pattern: str) -> list[Request]:
        """Recorded requests of `method` whose path matches the regex `pattern`."""
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return self._head(repo_id, revision).files

    # ----------------------------------------------------------------- HTTP

    def _handle(self, handler: BaseHTTPRequestHandler):
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        request = Request(
            handler.command,
            unquote(url.path),
            parse_qs(url.query),
            {k.lower(): v for k, v in handler.headers.items()},
            handler.rfile.read(length) if length else b"",
        )
        with self._lock:
            self.requests.append(request)
            status, headers, body = self._route(request)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        if not isinstance(body, bytes):
            handler.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if request.method != "HEAD":
            handler.wfile.write(payload)

    def _route(self, request: Request):
        if request.method == "POST" and request.path == "/api/repos/create":
            return self._create_repo(request.json)
        if request.method == "POST" and request.path == "/api/validate-yaml":
            return 200, {}, {"errors": [], "warnings": []}
        match = _API.fullmatch(request.path)
        if match and match["repo"] in self.repos:
            repo_id, action, rev = match["repo"], match["action"], match["rev"]
            if request.method == "POST" and action == "branch":
                return self._create_branch(repo_id, rev, request.json or {})
            if rev is not None and rev not in self.repos[repo_id].branches and not self._find(repo_id, rev):
                return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {rev}"}
            if request.method == "POST" and action == "preupload":
                files = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in request.json["files"]
                ]
                return 200, {}, {"files": files}
            if request.method == "POST" and action == "commit":
                return self._commit(repo_id, rev, request.body)
            if request.method == "GET" and action in (None, "revision"):
                commit = self._head(repo_id, rev or "main")
                siblings = [{"rfilename": path} for path in sorted(commit.files)]
                info = {"id": repo_id, "sha": commit.oid, "private": self.repos[repo_id].private, "siblings": siblings}
                return 200, {}, info
            if request.method == "GET" and action == "tree" and not match["rest"]:
                return self._tree(self._head(repo_id, rev), request.query)
            if request.method == "GET" and action == "tree":  # a folder's listing: transformers 5 asks for one
                commit, folder = self._head(repo_id, rev), match["rest"].rstrip("/") + "/"
                entries = [
                    {"type": "file", "path": path, "size": len(content), "oid": git_blob_id(content)}
                    for path, content in sorted(commit.files.items())
                    if path.startswith(folder)
                ]
                if not entries:
                    return 404, {"X-Error-Code": "EntryNotFound"}, {"error": f"{match['rest']} does not exist"}
                return 200, {}, entries
        match = _RESOLVE.fullmatch(request.path)
        if match and match["repo"] in self.repos and request.method in ("GET", "HEAD"):
            commit = self._head(match["repo"], match["rev"])
            if commit is None:
                return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {match['rev']}"}
            if match["path"] not in commit.files:
                return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit.oid}, {"error": "not found"}
            content = commit.files[match["path"]]
            return 200, {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_id(content)}"'}, content
        if match or _API.fullmatch(request.path):
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        return 404, {}, {"error": f"the fake Hub does not implement {request.method} {request.path}"}

    # ---------------------------------------------------------------- state

    def _create_repo(self, payload: dict):
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        # hub 0.x sends `private`, 1.x and later `visibility`.
        private = payload.get("private") is True or payload.get("visibility") == "private"
        self.repos[repo_id] = Repo(private, {"main": [Commit(self._oid(repo_id, "initial"), "initial commit", {})]})
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def _create_branch(self, repo_id: str, branch: str, payload: dict):
        repo = self.repos[repo_id]
        if branch in repo.branches:
            return 409, {}, {"error": "Reference already exists"}
        start = self._head(repo_id, payload.get("startingPoint") or "main")
        repo.branches[branch] = [start]
        return 200, {}, {}

    def _commit(self, repo_id: str, branch: str, body: bytes):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        files = dict(self._head(repo_id, branch).files)
        for line in lines[1:]:
            if line["key"] != "file":  # only regular files were offered in preupload
                return 400, {}, {"error": f"the fake Hub only takes regular files, got {line['key']}"}
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        # Like git's, the id depends on the tree: a client's cache of an earlier fake Hub never matches other files.
        tree = sorted((path, git_blob_id(content)) for path, content in files.items())
        commit = Commit(self._oid(repo_id, header["summary"], len(self.requests), tree), header["summary"], files)
        self.repos[repo_id].branches[branch].append(commit)
        url = f"{self.url}/{repo_id}/commit/{commit.oid}"
        return 200, {}, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None}

    def _find(self, repo_id: str, oid: str) -> Commit | None:
        history = [c for commits in self.repos[repo_id].branches.values() for c in commits]
        return next((c for c in history if c.oid == oid), None)

    def _head(self, repo_id: str, revision: str) -> Commit | None:
        branches = self.repos[repo_id].branches
        return branches[revision][-1] if revision in branches else self._find(repo_id, revision)

    @staticmethod
    def _oid(*parts) -> str:
        return hashlib.sha1(repr(parts).encode()).hexdigest()

    @staticmethod
    def _tree(commit: Commit, query: dict) -> tuple[int, dict, list | dict]:
        """The recursive listing `snapshot_download` asks for on hub 1.x and later."""
        if query.get("recursive", [""])[0].lower() != "true":
            return 400, {}, {"error": "the fake Hub only lists trees recursively"}
        folders = sorted({parent for path in commit.files for parent in map(str, Path(path).parents) if parent != "."})
        entries = [{"type": "directory", "path": folder, "oid": FakeHub._oid(folder)} for folder in folders]
        for path, content in sorted(commit.files.items()):
            entries.append({"type": "file", "path": path, "size": len(content), "oid": git_blob_id(content)})
        return 200, {}, entries
