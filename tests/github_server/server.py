"""A stateful fake GitHub REST server on 127.0.0.1 that validates every request and response against
GitHub's REST description (see ``spec.py``) and records each violation in ``server.violations``.

Only the operations in the description subset are routed; anything else (/rate_limit aside, which is
in it) is itself a violation: the bot must not depend on operations outside it. GET /user answers the
token's login, or 403 for a token made with ``user_api=False`` (an App installation token or an Actions
``GITHUB_TOKEN``, which GitHub refuses there).
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .faults import FaultQueue
from .spec import SpecValidator, completed
from .state import GitHubState, Pull, Repo, TokenInfo, blob_sha, commentable_lines, make_patch, next_id

R = "/repos/<owner>/<repo>"
# (werkzeug rule, description path template, {method: operationId})
_ROUTES = [
    (R, "/repos/{owner}/{repo}", {"GET": "repos/get"}),
    (
        R + "/compare/<basehead>",
        "/repos/{owner}/{repo}/compare/{basehead}",
        {"GET": "repos/compare-commits-with-basehead"},
    ),
    (R + "/pulls/<int:pull_number>", "/repos/{owner}/{repo}/pulls/{pull_number}", {"GET": "pulls/get"}),
    (
        R + "/pulls/<int:pull_number>/files",
        "/repos/{owner}/{repo}/pulls/{pull_number}/files",
        {"GET": "pulls/list-files"},
    ),
    (
        R + "/pulls/<int:pull_number>/commits",
        "/repos/{owner}/{repo}/pulls/{pull_number}/commits",
        {"GET": "pulls/list-commits"},
    ),
    (
        R + "/pulls/<int:pull_number>/comments",
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments",
        {"GET": "pulls/list-review-comments", "POST": "pulls/create-review-comment"},
    ),
    (
        R + "/pulls/<int:pull_number>/reviews",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        {"GET": "pulls/list-reviews", "POST": "pulls/create-review"},
    ),
    (
        R + "/pulls/<int:pull_number>/reviews/<int:review_id>",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}",
        {"GET": "pulls/get-review", "PUT": "pulls/update-review", "DELETE": "pulls/delete-pending-review"},
    ),
    (
        R + "/pulls/comments/<int:comment_id>",
        "/repos/{owner}/{repo}/pulls/comments/{comment_id}",
        {
            "GET": "pulls/get-review-comment",
            "PATCH": "pulls/update-review-comment",
            "DELETE": "pulls/delete-review-comment",
        },
    ),
    (
        R + "/issues/<int:issue_number>/comments",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        {"GET": "issues/list-comments", "POST": "issues/create-comment"},
    ),
    (
        R + "/issues/comments/<int:comment_id>",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        {"GET": "issues/get-comment", "PATCH": "issues/update-comment", "DELETE": "issues/delete-comment"},
    ),
    (R + "/contents/<path:path>", "/repos/{owner}/{repo}/contents/{path}", {"GET": "repos/get-content"}),
    (R + "/git/blobs/<file_sha>", "/repos/{owner}/{repo}/git/blobs/{file_sha}", {"GET": "git/get-blob"}),
    (R + "/commits/<ref>", "/repos/{owner}/{repo}/commits/{ref}", {"GET": "repos/get-commit"}),
    (R + "/check-runs", "/repos/{owner}/{repo}/check-runs", {"POST": "checks/create"}),
    (
        R + "/check-runs/<int:check_run_id>",
        "/repos/{owner}/{repo}/check-runs/{check_run_id}",
        {"GET": "checks/get", "PATCH": "checks/update"},
    ),
    (R + "/statuses/<sha>", "/repos/{owner}/{repo}/statuses/{sha}", {"POST": "repos/create-commit-status"}),
    (R + "/labels", "/repos/{owner}/{repo}/labels", {"GET": "issues/list-labels-for-repo"}),
    ("/user", "/user", {"GET": "users/get-authenticated"}),
]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # the calls are in server.calls instead
        pass


@dataclass
class RecordedCall:
    method: str
    path: str
    operation_id: str | None
    status: int | None
    """None: no answer was sent (a ``no_answer`` fault)."""
    body: dict | list | None


class _NoAnswer(ConnectionError):
    """Raised out of the WSGI app to send nothing: werkzeug takes a ConnectionError for a connection the
    client dropped and writes no response."""

    def __init__(self, stall: float):
        super().__init__("no answer (fault)")
        self.stall = stall


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors, headers or {}


class GitHubServer:
    """The loopback server. Use as a context manager or ``start()``/``stop()``.

    ``prefix="/api/v3"`` serves the API the way GitHub Enterprise Server does. ``token`` is a fresh
    random token accepted by the server (logged in as ``bot_login``); more via ``add_token``.
    """

    def __init__(self, prefix: str = "", bot_login: str = "pttrust-bot[bot]") -> None:
        self.prefix = prefix.rstrip("/")
        self.state = GitHubState()
        self.faults = FaultQueue()
        self.violations: list[str] = []
        self.calls: list[RecordedCall] = []
        self.validator = SpecValidator()
        self.token = "ghs_" + secrets.token_hex(16)
        self.state.tokens[self.token] = TokenInfo(bot_login)
        self._server = None
        self._thread = None
        self._released = threading.Event()  # set by stop(): ends every stall at once
        self._url_map = Map(
            [
                Rule(self.prefix + rule, endpoint=index, methods=list(methods))
                for index, (rule, template, methods) in enumerate(_ROUTES)
            ]
        )

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> GitHubServer:
        self._released.clear()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> GitHubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What PyGithub's ``base_url`` should be (includes the Enterprise prefix)."""
        return f"http://127.0.0.1:{self._server.server_port}{self.prefix}"

    def add_token(self, login: str, checks_write: bool = True, user_api: bool = True, prefix: str = "ghs_") -> str:
        """Another identity (a second user, ``github-actions[bot]`` with ``user_api=False``...)."""
        token = prefix + secrets.token_hex(16)
        self.state.tokens[token] = TokenInfo(login, checks_write, user_api=user_api)
        return token

    def assert_no_violations(self) -> None:
        assert not self.violations, "GitHub REST description violations:\n" + "\n".join(self.violations)

    def calls_to(self, operation_id: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.operation_id == operation_id]

    # -- request handling ---------------------------------------------------------------------------
    def _wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self._handle(request)
        except _NoAnswer as no_answer:
            self._released.wait(no_answer.stall)
            try:
                environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            except OSError:  # the client already gave up and closed it
                pass
            raise
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        raw = request.get_data()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        api_path = request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else request.path
        query = request.query_string.decode()
        req_headers = dict(request.headers)
        template = operation_id = None
        spec_path = api_path
        status, payload, headers = 500, None, {}
        try:
            try:
                index, args = self._url_map.bind("127.0.0.1").match(request.path, request.method)
            except (NotFound, MethodNotAllowed):
                self._violation(f"{request.method} {api_path}: operation not in the REST description subset")
                raise ApiError(404, "Not Found") from None
            _, template, methods = _ROUTES[index]
            operation_id = methods[request.method]
            if "path" in args:
                # `{path}` is one parameter holding a file path with '/', which an OpenAPI path template
                # cannot match segment by segment: validate it percent-encoded, as one value.
                spec_path = api_path[: len(api_path) - len(args["path"])] + quote(args["path"], safe="")
            else:
                spec_path = api_path
            self.violations.extend(
                self.validator.validate_request(
                    request.method, spec_path, query, req_headers, raw, request.content_type or ""
                )
            )
            user = self._authenticate(request)
            fault = self.faults.take(operation_id, body if isinstance(body, dict) else {})
            if fault is not None and not fault.after_serving:
                self._fail(fault, request, api_path, operation_id, body)
            with self.state.lock:
                status, payload, headers = self._dispatch(operation_id, request, args, body, user)
            if fault is not None:
                self._fail(fault, request, api_path, operation_id, body)
        except _NoAnswer:
            raise
        except ApiError as err:
            status, headers = err.status, dict(err.headers)
            payload = {"message": err.message, "documentation_url": "https://docs.github.com/rest"}
            if err.errors is not None:
                payload["errors"] = err.errors
        except HTTPException as err:  # pragma: no cover - werkzeug-level errors
            status, payload = err.code or 500, {"message": str(err), "documentation_url": ""}
        except Exception as err:  # a bug in the fake must fail the test, not hang it
            self._violation(f"server error on {request.method} {api_path}: {type(err).__name__}: {err}")
            status, payload = 500, {"message": "loopback server bug", "documentation_url": ""}

        data = b"" if status == 204 or payload is None else json.dumps(payload).encode()
        headers.setdefault("x-ratelimit-limit", "5000")
        headers.setdefault("x-ratelimit-remaining", "4999")
        headers.setdefault("x-ratelimit-reset", str(int(time.time()) + 3600))
        content_type = "application/json; charset=utf-8"
        if template is not None:
            self.violations.extend(
                self.validator.validate_response(
                    request.method,
                    spec_path,
                    query,
                    req_headers,
                    raw,
                    request.content_type or "",
                    status,
                    data,
                    headers,
                    content_type,
                    template,
                )
            )
        self.calls.append(RecordedCall(request.method, api_path, operation_id, status, body))
        response = Response(data or None, status=status, headers=headers)
        if data:
            response.content_type = content_type
        return response

    def _fail(self, fault, request: Request, api_path: str, operation_id: str, body) -> None:
        if fault.no_answer:  # nothing is sent, so there is no response to validate
            self.calls.append(RecordedCall(request.method, api_path, operation_id, None, body))
            raise _NoAnswer(fault.stall)
        raise ApiError(fault.status, fault.message, fault.errors, fault.headers)

    def _violation(self, text: str) -> None:
        self.violations.append(text)

    def _authenticate(self, request: Request) -> TokenInfo:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth and request.method == "GET":
            # Like GitHub: anyone may read a public repository (private ones answer 404 below).
            return TokenInfo("", checks_write=False, anonymous=True)
        if not token:
            raise ApiError(401, "Requires authentication")
        info = self.state.tokens.get(token.strip())
        if scheme.lower() not in ("token", "bearer") or info is None:
            raise ApiError(401, "Bad credentials")
        return info

    # -- URLs PyGithub follows ----------------------------------------------------------------------
    def _api(self, request: Request) -> str:
        return f"{request.host_url.rstrip('/')}{self.prefix}"

    def _dispatch(self, op: str, request: Request, args: dict, body, user: TokenInfo):
        if op == "users/get-authenticated":
            if not user.user_api:
                raise ApiError(403, "Resource not accessible by integration")
            ctx = _Ctx(self, request, None, user)
            payload = ctx.user_json(user.login) | {
                "node_id": "U",
                "avatar_url": "",
                "gravatar_id": None,
                "html_url": f"https://github.com/{quote(user.login)}",
            }
            return 200, completed("get", "/user", 200, payload), {}
        repo = self.state.repo(args.pop("owner"), args.pop("repo"))
        if repo is None or (user.anonymous and repo.private):
            raise ApiError(404, "Not Found")
        ctx = _Ctx(self, request, repo, user)
        handler = getattr(ctx, "op_" + op.replace("/", "_").replace("-", "_"))
        result = handler(body or {}, **args)
        status, payload = result[:2]
        headers = result[2] if len(result) > 2 else {}
        return status, payload, headers


class _Ctx:
    """One request's view: handlers named after operationIds, plus GitHub-shaped serializers."""

    def __init__(self, server: GitHubServer, request: Request, repo: Repo, user: TokenInfo):
        self.server, self.request, self.repo, self.user = server, request, repo, user
        self.api = server._api(request)
        self.repo_url = f"{self.api}/repos/{repo.full_name}" if repo is not None else ""

    # -- helpers ------------------------------------------------------------------------------------
    def pull(self, number: int) -> Pull:
        pull = self.repo.pulls.get(number)
        if pull is None:
            raise ApiError(404, "Not Found")
        return pull

    def page(self, method: str, template: str, items: list):
        """Paginate like GitHub: ``per_page`` (max 100), ``page``, a Link header with next/last."""
        per_page = min(int(self.request.args.get("per_page", 30)), 100)
        page = int(self.request.args.get("page", 1))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        base = f"{self.request.host_url.rstrip('/')}{self.request.path}"
        links = []
        if page < last:
            links.append(f'<{base}?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{base}?per_page={per_page}&page={last}>; rel="last"')
        if links:
            headers["Link"] = ", ".join(links)
        return 200, [completed(method, template, 200, [x])[0] for x in chunk], headers

    def user_json(self, login: str | None) -> dict | None:
        if login is None:
            return None
        return {
            "login": login,
            "id": abs(hash(login)) % 10**8,
            "type": "Bot" if login.endswith("[bot]") else "User",
            "url": f"{self.api}/users/{quote(login)}",
            "site_admin": False,
        }

    def pull_json(self, pull: Pull) -> dict:
        url = f"{self.repo_url}/pulls/{pull.number}"
        issue_url = f"{self.repo_url}/issues/{pull.number}"

        def ref(r, sha):
            return {
                "ref": r,
                "sha": sha,
                "label": f"{self.repo.owner}:{r}",
                "repo": self.repo_json(),
                "user": self.user_json(self.repo.owner),
            }

        return {
            "id": pull.id,
            "number": pull.number,
            "state": "open",
            "title": pull.title,
            "body": pull.body,
            "url": url,
            "issue_url": issue_url,
            "comments_url": f"{issue_url}/comments",
            "review_comments_url": f"{url}/comments",
            "commits_url": f"{url}/commits",
            "statuses_url": f"{self.repo_url}/statuses/{pull.head_sha}",
            "review_comment_url": f"{self.repo_url}/pulls/comments{{/number}}",
            "user": self.user_json(pull.user_login),
            "draft": pull.draft,
            "labels": [self.label_json(n) for n in pull.labels],
            "head": ref(pull.head_ref, pull.head_sha),
            "base": ref(pull.base_ref, pull.base_sha),
            "merged": False,
            "mergeable": True,
            "locked": False,
        }

    def repo_json(self) -> dict:
        return {
            "id": self.repo.id,
            "name": self.repo.name,
            "full_name": self.repo.full_name,
            "url": self.repo_url,
            "owner": self.user_json(self.repo.owner),
            "private": False,
            "default_branch": "main",
        }

    def label_json(self, name: str) -> dict:
        return {
            "id": abs(hash(name)) % 10**8,
            "name": name,
            "color": "ededed",
            "description": self.repo.labels.get(name) or None,
            "default": False,
            "url": f"{self.repo_url}/labels/{quote(name)}",
        }

    def review_comment_json(self, c: dict) -> dict:
        # start_side is a nullable enum that OpenAPI 3.0 cannot express: GitHub omits it when unset.
        # Outdated comments: the description has no null `line`, so it is left out (as optional).
        def hidden(k):
            return (
                k.startswith("_") or k == "pull_number" or (k in ("start_side", "line", "start_line") and c[k] is None)
            )

        return {k: v for k, v in c.items() if not hidden(k)} | {
            "url": f"{self.repo_url}/pulls/comments/{c['id']}",
            "pull_request_url": f"{self.repo_url}/pulls/{c['pull_number']}",
            "user": self.user_json(c["_login"]),
        }

    def issue_comment_json(self, c: dict) -> dict:
        return {
            "id": c["id"],
            "body": c["body"],
            "user": self.user_json(c["_login"]),
            "url": f"{self.repo_url}/issues/comments/{c['id']}",
            "issue_url": f"{self.repo_url}/issues/{c['issue_number']}",
            "created_at": c["created_at"],
            "updated_at": c["updated_at"],
        }

    def review_json(self, r: dict) -> dict:
        out = {
            "id": r["id"],
            "body": r["body"],
            "state": r["state"],
            "commit_id": r["commit_id"],
            "user": self.user_json(r["_login"]),
            "pull_request_url": f"{self.repo_url}/pulls/{r['pull_number']}",
        }
        if r["submitted_at"]:  # pending reviews have none; the description has no null for it
            out["submitted_at"] = r["submitted_at"]
        return out

    def check_run_json(self, run: dict) -> dict:
        return {
            "id": run["id"],
            "name": run["name"],
            "head_sha": run["head_sha"],
            "status": run["status"],
            "conclusion": run["conclusion"],
            "url": f"{self.repo_url}/check-runs/{run['id']}",
            "output": {
                "title": run["output"].get("title"),
                "summary": run["output"].get("summary"),
                "text": run["output"].get("text"),
                "annotations_count": len(run["annotations"]),
                "annotations_url": f"{self.repo_url}/check-runs/{run['id']}/annotations",
            },
            "pull_requests": [],
            "check_suite": {"id": run["id"]},
        }

    # -- pulls --------------------------------------------------------------------------------------
    T = "/repos/{owner}/{repo}"

    def op_repos_get(self, body):
        return 200, completed("get", self.T, 200, self.repo_json())

    def op_pulls_get(self, body, pull_number):
        pull = self.pull(pull_number)
        return 200, completed("get", self.T + "/pulls/{pull_number}", 200, self.pull_json(pull))

    def op_repos_compare_commits_with_basehead(self, body, basehead):
        """``base...head`` by sha (what the Action's push and merge_group runs read)."""
        from types import SimpleNamespace

        base, sep, head = basehead.partition("...")
        if not sep or base not in self.repo.commits or head not in self.repo.commits:
            raise ApiError(404, "Not Found")
        rng = SimpleNamespace(base_sha=base, head_sha=head)
        files = []
        for f in self.repo.pull_files(rng):
            f = dict(f)
            f["contents_url"] = f"{self.repo_url}/contents/{quote(f['filename'])}?ref={head}"
            f["blob_url"] = f["raw_url"] = f["contents_url"]
            f["changes"] = f["additions"] + f["deletions"]
            files.append(f)
        commits = [self.commit_json(c) for c in self.repo.pull_commits(rng)]
        payload = {
            "url": f"{self.repo_url}/compare/{basehead}",
            "status": "ahead",
            "ahead_by": len(commits),
            "behind_by": 0,
            "total_commits": len(commits),
            "base_commit": self.commit_json(self.repo.commits[base]),
            "merge_base_commit": self.commit_json(self.repo.commits[base]),
            "commits": commits,
            "files": files,
        }
        return 200, completed("get", self.T + "/compare/{basehead}", 200, payload)

    def op_pulls_list_files(self, body, pull_number):
        pull = self.pull(pull_number)
        files = []
        for f in self.repo.pull_files(pull):
            f = dict(f)
            ref = pull.head_sha if f["status"] != "removed" else pull.base_sha
            f["contents_url"] = f"{self.repo_url}/contents/{quote(f['filename'])}?ref={ref}"
            f["blob_url"] = f["raw_url"] = f["contents_url"]
            f["changes"] = f["additions"] + f["deletions"]
            files.append(f)
        return self.page("get", self.T + "/pulls/{pull_number}/files", files)

    def op_pulls_list_commits(self, body, pull_number):
        pull = self.pull(pull_number)
        commits = [self.commit_json(c) for c in self.repo.pull_commits(pull)]
        return self.page("get", self.T + "/pulls/{pull_number}/commits", commits)

    def commit_json(self, c) -> dict:
        def person(name, email):
            return {"name": name, "email": email, "date": "2024-01-01T00:00:00Z"}

        return {
            "sha": c.sha,
            "url": f"{self.repo_url}/commits/{c.sha}",
            "author": self.user_json(c.author_login),
            "committer": self.user_json(c.committer_login),
            "parents": [{"sha": p, "url": f"{self.repo_url}/commits/{p}"} for p in c.parents],
            "commit": {
                "message": c.message,
                "author": person(c.author_name, c.author_email),
                "committer": person(c.committer_name, c.committer_email),
                "url": f"{self.repo_url}/git/commits/{c.sha}",
                "comment_count": 0,
                "tree": {"sha": c.sha, "url": f"{self.repo_url}/git/trees/{c.sha}"},
            },
        }

    def op_repos_get_commit(self, body, ref):
        commit = self.repo.commits.get(ref)
        if commit is None:
            raise ApiError(404, "No commit found for SHA: " + ref)
        # The commit's own diff against its first parent (what per-line authorship replays).
        parent = self.repo.commits[commit.parents[0]].tree if commit.parents else {}
        files = []
        for path in sorted(set(parent) | set(commit.tree)):
            old, new = parent.get(path), commit.tree.get(path)
            if old == new:
                continue
            patch = make_patch(old or "", new or "")
            status = "added" if old is None else "removed" if new is None else "modified"
            files.append(
                {
                    "filename": path,
                    "status": status,
                    "patch": patch,
                    "sha": blob_sha(new or old),
                    "additions": patch.count("\n+"),
                    "deletions": patch.count("\n-"),
                    "changes": 0,
                    "blob_url": self.repo_url,
                    "raw_url": self.repo_url,
                    "contents_url": f"{self.repo_url}/contents/{quote(path)}",
                }
            )
        payload = self.commit_json(commit) | {"files": files}
        return 200, completed("get", self.T + "/commits/{ref}", 200, payload)

    def op_pulls_list_review_comments(self, body, pull_number):
        self.pull(pull_number)
        comments = [
            self.review_comment_json(c)
            for c in self.repo.review_comments.values()
            if c["pull_number"] == pull_number and not c["_pending"]
        ]
        return self.page("get", self.T + "/pulls/{pull_number}/comments", comments)

    def op_pulls_list_reviews(self, body, pull_number):
        self.pull(pull_number)
        reviews = [self.review_json(r) for r in self.repo.reviews.values() if r["pull_number"] == pull_number]
        return self.page("get", self.T + "/pulls/{pull_number}/reviews", reviews)

    def op_pulls_create_review(self, body, pull_number):
        """Validates like GitHub: commit in the PR, each comment on a RIGHT line of a diff hunk."""
        pull = self.pull(pull_number)
        _check_body(body.get("body"))
        for c in body.get("comments", []):
            _check_body(c.get("body"))
        commit_id = body.get("commit_id", pull.head_sha)
        if commit_id not in {c.sha for c in self.repo.pull_commits(pull)}:
            raise ApiError(422, "Unprocessable Entity", ["commit_id is not part of the pull request"])
        event = body.get("event")
        if event in ("COMMENT", "REQUEST_CHANGES") and not body.get("body"):
            raise ApiError(422, "Unprocessable Entity", ["Body is required for this event"])
        pending = any(
            r["pull_number"] == pull_number and r["state"] == "PENDING" and r["_login"] == self.user.login
            for r in self.repo.reviews.values()
        )
        if event is None and pending:
            raise ApiError(422, "Unprocessable Entity", ["User can only have one pending review per pull request"])
        files = {f["filename"]: f for f in self.repo.pull_files(pull)}
        head_tree = self.repo.commits[commit_id].tree
        for c in body.get("comments", []):
            self._check_comment_target(files, c)
        review = {
            "id": next_id(),
            "pull_number": pull_number,
            "body": body.get("body", ""),
            "state": {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}.get(
                event, "PENDING"
            ),
            "commit_id": commit_id,
            "_login": self.user.login,
            "submitted_at": None if event is None else _now(),
        }
        self.repo.reviews[review["id"]] = review
        for c in body.get("comments", []):
            cid = next_id()
            lines = head_tree.get(c["path"], "").splitlines()
            self.repo.review_comments[cid] = {
                "id": cid,
                "pull_number": pull_number,
                "pull_request_review_id": review["id"],
                "path": c["path"],
                "body": c["body"],
                "line": c.get("line"),
                "side": c.get("side", "RIGHT"),
                "start_line": c.get("start_line"),
                "start_side": c.get("start_side"),
                "original_line": c.get("line"),
                "commit_id": commit_id,
                "original_commit_id": commit_id,
                "diff_hunk": "",
                "created_at": _now(),
                "updated_at": _now(),
                "_login": self.user.login,
                "_pending": event is None,
                "_line_text": lines[c["line"] - 1] if c.get("line") and c["line"] <= len(lines) else None,
            }
        return 200, completed("post", self.T + "/pulls/{pull_number}/reviews", 200, self.review_json(review))

    def _check_comment_target(self, files: dict, c: dict) -> None:
        if "position" in c:
            return  # legacy diff positions: not used by the bot, accepted as given
        f = files.get(c["path"])
        line, start = c.get("line"), c.get("start_line")
        if f is None or line is None or c.get("side", "RIGHT") != "RIGHT":
            raise ApiError(422, "Unprocessable Entity", ["Path could not be resolved"])
        hunk = next((h for h in commentable_lines(f["patch"]) if line in h), None)
        if hunk is None or (start is not None and (start >= line or start not in hunk)):
            raise ApiError(422, "Unprocessable Entity", ["Line could not be resolved"])

    def op_pulls_delete_pending_review(self, body, pull_number, review_id):
        review = self.repo.reviews.get(review_id)
        if review is None or review["pull_number"] != pull_number:
            raise ApiError(404, "Not Found")
        if review["state"] != "PENDING":
            raise ApiError(422, "Unprocessable Entity", ["Can not delete a non-pending pull request review"])
        del self.repo.reviews[review_id]
        for cid in [k for k, c in self.repo.review_comments.items() if c["pull_request_review_id"] == review_id]:
            del self.repo.review_comments[cid]
        return 200, completed(
            "delete", self.T + "/pulls/{pull_number}/reviews/{review_id}", 200, self.review_json(review)
        )

    def op_pulls_get_review(self, body, pull_number, review_id):
        review = self.repo.reviews.get(review_id)
        if review is None:
            raise ApiError(404, "Not Found")
        return 200, completed("get", self.T + "/pulls/{pull_number}/reviews/{review_id}", 200, self.review_json(review))

    def op_pulls_update_review(self, body, pull_number, review_id):
        _check_body(body.get("body"))
        review = self.repo.reviews.get(review_id)
        if review is None:
            raise ApiError(404, "Not Found")
        review["body"] = body["body"]
        return 200, completed("put", self.T + "/pulls/{pull_number}/reviews/{review_id}", 200, self.review_json(review))

    def op_pulls_create_review_comment(self, body, pull_number):
        raise ApiError(403, "The bot posts inline comments through reviews only")

    def _review_comment(self, comment_id) -> dict:
        c = self.repo.review_comments.get(comment_id)
        if c is None:
            raise ApiError(404, "Not Found")
        return c

    def op_pulls_get_review_comment(self, body, comment_id):
        return 200, completed(
            "get",
            self.T + "/pulls/comments/{comment_id}",
            200,
            self.review_comment_json(self._review_comment(comment_id)),
        )

    def op_pulls_update_review_comment(self, body, comment_id):
        _check_body(body.get("body"))
        c = self._review_comment(comment_id)
        c["body"], c["updated_at"] = body["body"], _now()
        return 200, completed("patch", self.T + "/pulls/comments/{comment_id}", 200, self.review_comment_json(c))

    def op_pulls_delete_review_comment(self, body, comment_id):
        self._review_comment(comment_id)
        del self.repo.review_comments[comment_id]
        return 204, None

    # -- issue comments -----------------------------------------------------------------------------
    def op_issues_list_comments(self, body, issue_number):
        self.pull(issue_number)
        comments = [
            self.issue_comment_json(c) for c in self.repo.issue_comments.values() if c["issue_number"] == issue_number
        ]
        return self.page("get", self.T + "/issues/{issue_number}/comments", comments)

    def op_issues_create_comment(self, body, issue_number):
        _check_body(body.get("body"))
        self.pull(issue_number)
        cid = next_id()
        c = {
            "id": cid,
            "issue_number": issue_number,
            "body": body["body"],
            "_login": self.user.login,
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.repo.issue_comments[cid] = c
        return 201, completed("post", self.T + "/issues/{issue_number}/comments", 201, self.issue_comment_json(c))

    def _issue_comment(self, comment_id) -> dict:
        c = self.repo.issue_comments.get(comment_id)
        if c is None:
            raise ApiError(404, "Not Found")
        return c

    def op_issues_get_comment(self, body, comment_id):
        return 200, completed(
            "get",
            self.T + "/issues/comments/{comment_id}",
            200,
            self.issue_comment_json(self._issue_comment(comment_id)),
        )

    def op_issues_update_comment(self, body, comment_id):
        _check_body(body.get("body"))
        c = self._issue_comment(comment_id)
        c["body"], c["updated_at"] = body["body"], _now()
        return 200, completed("patch", self.T + "/issues/comments/{comment_id}", 200, self.issue_comment_json(c))

    def op_issues_delete_comment(self, body, comment_id):
        self._issue_comment(comment_id)
        del self.repo.issue_comments[comment_id]
        return 204, None

    def op_issues_list_labels_for_repo(self, body):
        return self.page("get", self.T + "/labels", [self.label_json(n) for n in self.repo.labels])

    # -- contents -----------------------------------------------------------------------------------
    def op_repos_get_content(self, body, path):
        ref = self.request.args.get("ref", "")
        commit = self.repo.commits.get(ref)
        if commit is None or path not in commit.tree:
            raise ApiError(404, "Not Found")
        text = commit.tree[path]
        from .state import blob_sha

        payload = {
            "type": "file",
            "encoding": "base64",
            "size": len(text.encode()),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": base64.b64encode(text.encode()).decode(),
            "sha": blob_sha(text),
            "url": f"{self.repo_url}/contents/{quote(path)}?ref={ref}",
            "git_url": f"{self.repo_url}/git/blobs/{blob_sha(text)}",
            "html_url": None,
            "download_url": None,
            "_links": {"self": f"{self.repo_url}/contents/{quote(path)}", "git": None, "html": None},
        }
        return 200, completed("get", self.T + "/contents/{path}", 200, payload)

    def op_git_get_blob(self, body, file_sha):
        from .state import blob_sha

        for commit in self.repo.commits.values():
            for text in commit.tree.values():
                if blob_sha(text) == file_sha:
                    payload = {
                        "sha": file_sha,
                        "size": len(text.encode()),
                        "encoding": "base64",
                        "content": base64.b64encode(text.encode()).decode(),
                        "url": f"{self.repo_url}/git/blobs/{file_sha}",
                        "node_id": "B",
                    }
                    return 200, completed("get", self.T + "/git/blobs/{file_sha}", 200, payload)
        raise ApiError(404, "Not Found")

    # -- checks and statuses ------------------------------------------------------------------------
    def op_checks_create(self, body):
        if not self.user.checks_write:
            raise ApiError(403, "Resource not accessible by integration")
        output = body.get("output", {})
        _check_output(output)
        annotations = output.get("annotations", [])
        if len(annotations) > 50:
            raise ApiError(422, "Only 50 annotations are allowed per request")
        run = {
            "id": next_id(),
            "name": body["name"],
            "head_sha": body["head_sha"],
            "status": "completed" if body.get("conclusion") else body.get("status", "queued"),
            "conclusion": body.get("conclusion"),
            "output": dict(output),
            "annotations": list(annotations),
        }
        self.repo.check_runs[run["id"]] = run
        return 201, completed("post", self.T + "/check-runs", 201, self.check_run_json(run))

    def _run(self, check_run_id) -> dict:
        run = self.repo.check_runs.get(check_run_id)
        if run is None:
            raise ApiError(404, "Not Found")
        return run

    def op_checks_get(self, body, check_run_id):
        return 200, completed(
            "get", self.T + "/check-runs/{check_run_id}", 200, self.check_run_json(self._run(check_run_id))
        )

    def op_checks_update(self, body, check_run_id):
        run = self._run(check_run_id)
        output = body.get("output", {})
        _check_output(output)
        annotations = output.get("annotations", [])
        if len(annotations) > 50:
            raise ApiError(422, "Only 50 annotations are allowed per request")
        run["annotations"] += annotations  # GitHub appends annotations on update
        run["output"].update({k: v for k, v in output.items() if k != "annotations"})
        if body.get("conclusion"):
            run["conclusion"], run["status"] = body["conclusion"], "completed"
        return 200, completed("patch", self.T + "/check-runs/{check_run_id}", 200, self.check_run_json(run))

    def op_repos_create_commit_status(self, body, sha):
        status = {
            "id": next_id(),
            "sha": sha,
            "state": body["state"],
            "context": body.get("context", "default"),
            "description": body.get("description"),
            "target_url": body.get("target_url"),
        }
        self.repo.statuses.append(status)
        payload = {k: v for k, v in status.items() if k != "sha"} | {
            "url": f"{self.repo_url}/statuses/{sha}",
            "creator": self.user_json(self.user.login),
        }
        return 201, completed("post", self.T + "/statuses/{sha}", 201, payload)


BODY_LIMIT = 65536
"""GitHub's limit on a comment's or review's body, in characters ("Body is too long")."""
CHECK_OUTPUT_LIMIT = 65535
"""GitHub's limit on a check run's output.summary and output.text, in characters."""


def _check_body(text) -> None:
    if isinstance(text, str) and len(text) > BODY_LIMIT:
        raise ApiError(422, "Validation Failed", [f"Body is too long (maximum is {BODY_LIMIT} characters)"])


def _check_output(output: dict) -> None:
    for key in ("summary", "text"):
        value = output.get(key)
        if isinstance(value, str) and len(value) > CHECK_OUTPUT_LIMIT:
            raise ApiError(422, "Invalid request.", [f"output.{key} is too long (maximum is {CHECK_OUTPUT_LIMIT})"])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
