"""A small typed HTTP client for the classifier's public API and the Durable Functions management API.

The CLI talks only to these two HTTP surfaces, so it behaves the same against the local host and
against Azure. Every failure (an HTTP error status, a refused connection, a timeout, a body that is
not JSON) leaves this module as one exception type, :class:`ApiError`, whose message is the API's own
words when the API gave any: the commands print it and never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import requests

MANAGEMENT_PREFIX = "/runtime/webhooks/durabletask"
CONTINUATION_HEADER = "x-ms-continuation-token"
KEY_HEADER = "x-functions-key"

#: Runtime statuses after which an orchestration never changes again.
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
#: Where ``make run`` serves the app, and a local host the monitor page.
LOCAL_HOST = "http://127.0.0.1:7071"
#: The app names each session's orchestration ``session@<name>``; its custom status lists the tasks it holds.
SESSION_PREFIX = "session@"
#: Every runtime status the management API reports, spelled as it filters on them (exact case).
RUNTIME_STATUSES = ("Pending", "Running", "Suspended", "ContinuedAsNew", *sorted(TERMINAL_STATUSES))


class ApiError(Exception):
    """A call that did not succeed; ``status`` is None when no HTTP answer came back at all."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Response:
    """What the commands need from an answer: the status (202 vs 200 matters) and the JSON body."""

    status: int
    body: Any
    headers: Mapping[str, str]

    def json_object(self) -> dict[str, Any]:
        """The body, which must be a JSON object: anything else is an :class:`ApiError`, not a crash later."""
        if not isinstance(self.body, dict):
            raise ApiError(self.status, f"expected a JSON object in the answer, got {type(self.body).__name__}")
        return self.body


def error_message(response: requests.Response) -> str:
    """The API's own explanation of a failed call.

    The app's routes answer ``{"error": ...}``; the management API uses the ASP.NET shape
    ``{"Message": ..., "ExceptionMessage": ...}``, whose ``Message`` is often a generic "Something went
    wrong" while ``ExceptionMessage`` names the problem, so the latter wins. Some answers (404 for an
    unknown instance) have no body at all, and then the status line is all there is to say.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "ExceptionMessage", "Message", "message"):
            if body.get(key):
                return str(body[key])
    text = response.text.strip()
    if text and len(text) <= 500:
        return f"HTTP {response.status_code}: {text}"
    return f"HTTP {response.status_code} {response.reason or ''}".rstrip()


class ClassifierClient:
    """The calls the CLI makes, one method each; ``base_url`` is the app's origin.

    ``key`` is a function key. It goes in the ``x-functions-key`` header to ``/api`` routes. On Azure the
    management API takes only the Durable extension's system key (``durabletask_extension``) or the
    master key, so management-API URLs this client builds carry ``system_key`` as ``code=`` (``key`` when
    none is given, which works locally, where no key is checked, or when ``key`` is the master key). URLs
    the API handed out (such as ``statusQueryGetUri``) are used exactly as returned, because on Azure
    they already carry the system key.
    """

    def __init__(
        self,
        base_url: str,
        key: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        system_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key or None
        self.system_key = system_key or None
        self.timeout = timeout
        self.session = session or requests.Session()

    # -- public API (/api) -------------------------------------------------------------------------

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /api/tasks: the check-status payload of the 202 (``id``, ``statusQueryGetUri``, ...)."""
        body = self._call("POST", self._api_url("tasks"), json=payload, key_as="header").json_object()
        if not isinstance(body.get("id"), str) or not isinstance(body.get("statusQueryGetUri"), str):
            raise ApiError(202, f"the answer to a submission has no task id and status URL: {str(body)[:200]}")
        return body

    def result(self, task_ref: str) -> dict[str, Any]:
        """GET /api/tasks/{id}: the persisted result, by instance id or integer TaskID."""
        return self._call("GET", self._api_url(f"tasks/{quote(task_ref, safe='')}"), key_as="header").json_object()

    # -- management API (/runtime/webhooks/durabletask) ----------------------------------------------

    def status_at(self, status_url: str) -> dict[str, Any]:
        """GET a ``statusQueryGetUri`` exactly as the API returned it."""
        return self._call(
            "GET", status_url, key_as="none", bare={404: f"{status_url} answered 404: the task is gone (purged?)"}
        ).json_object()

    def waiting_in_session(self, instance_id: str) -> dict[str, Any] | None:
        """A status for a task that waits in its session's queue (it has no instance until its turn), or None.

        The running sessions' custom statuses list the tasks they hold (``running``, ``queued``)."""
        for session in self.instances(("Running", "Pending", "Suspended"), prefix=SESSION_PREFIX):
            custom = session.get("customStatus")
            if not isinstance(custom, Mapping):
                continue
            queued = custom.get("queued") or []
            if instance_id == custom.get("running") or instance_id in queued:
                ahead = queued.index(instance_id) + 1 if instance_id in queued else 0
                stage = f"queued in session {custom.get('session')}, {ahead} task(s) ahead"
                return {"instanceId": instance_id, "runtimeStatus": "Pending", "customStatus": {"stage": stage}}
        return None

    def status(self, instance_id: str) -> dict[str, Any]:
        """GET instances/{id}: runtime status, customStatus and, once completed, the output."""
        return self._call(
            "GET", self._instance_url(instance_id), key_as="code", bare={404: _no_instance(instance_id)}
        ).json_object()

    def history(self, instance_id: str) -> dict[str, Any]:
        """GET instances/{id}?showHistory=true&showHistoryOutput=true: the status with ``historyEvents``."""
        body = self._call(
            "GET",
            self._instance_url(instance_id),
            params={"showHistory": "true", "showHistoryOutput": "true"},
            key_as="code",
            bare={404: _no_instance(instance_id)},
        ).body
        if not isinstance(body, dict):
            raise ApiError(None, f"the status of {instance_id!r} is not a JSON object")
        return body

    def instances(
        self, statuses: Sequence[str] = (), limit: int | None = None, page_size: int = 100, prefix: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """GET instances/ page by page (``x-ms-continuation-token``), stopping after ``limit`` (None: all).

        ``top`` is the API's page size, not a total, so the token is followed until ``limit`` items.
        """
        params: dict[str, Any] = {"top": page_size if limit is None else min(limit, page_size), "showInput": "false"}
        if statuses:
            params["runtimeStatus"] = ",".join(statuses)
        if prefix:
            params["instanceIdPrefix"] = prefix
        token: str | None = None
        seen = 0
        while True:
            headers = {CONTINUATION_HEADER: token} if token else {}
            answer = self._call(
                "GET", self._management_url("instances/"), params=params, headers=headers, key_as="code"
            )
            if not isinstance(answer.body, list):  # an answer from something that is not the management API
                raise ApiError(answer.status, f"expected a JSON list of instances, got {type(answer.body).__name__}")
            for item in answer.body:
                yield item
                seen += 1
                if seen == limit:
                    return
            token = answer.headers.get(CONTINUATION_HEADER)
            if not token or not answer.body:
                return

    def terminate(self, instance_id: str, reason: str) -> None:
        """POST instances/{id}/terminate?reason=: 202; 404 unknown; 410 already finished (empty bodies)."""
        self._call(
            "POST",
            self._instance_url(instance_id, "/terminate"),
            params={"reason": reason},
            key_as="code",
            bare={
                404: _no_instance(instance_id),
                410: f"task {instance_id!r} has already ended (Completed, Failed or Terminated): nothing to terminate",
            },
        )

    def purge(self, instance_id: str) -> int:
        """DELETE instances/{id}: the orchestration's history goes; the persisted result stays."""
        body = self._call(
            "DELETE", self._instance_url(instance_id), key_as="code", bare={404: _no_instance(instance_id)}
        ).body
        return int((body or {}).get("instancesDeleted", 0))

    # -- plumbing --------------------------------------------------------------------------------------

    def _api_url(self, route: str) -> str:
        return f"{self.base_url}/api/{route}"

    def _management_url(self, route: str) -> str:
        return f"{self.base_url}{MANAGEMENT_PREFIX}/{route}"

    def _instance_url(self, instance_id: str, suffix: str = "") -> str:
        return self._management_url(f"instances/{quote(instance_id, safe='')}{suffix}")

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        key_as: Literal["header", "code", "none"],
        bare: dict[int, str] | None = None,
    ) -> Response:
        """One request; every way it can fail becomes an :class:`ApiError` with a readable message.

        ``key_as`` says how this URL wants its key: the function key as a header on ``/api``, the system key
        as ``code=`` on management URLs built here, and nothing on URLs the API handed out (they carry their
        own).
        ``bare`` gives the message for an error status answered without a body, as the management API
        answers 404 (unknown instance) and 410 (instance already ended), like the Durable extension.
        """
        params = dict(params or {})
        headers = dict(headers or {})
        if self.key and key_as == "header":
            headers[KEY_HEADER] = self.key
        elif key_as == "code" and (self.system_key or self.key):
            params["code"] = self.system_key or self.key
        try:
            response = self.session.request(
                method, url, params=params, headers=headers, json=json, timeout=self.timeout
            )
        except requests.ConnectionError:
            raise ApiError(None, f"cannot reach {self.base_url} — is the app running? (make run)") from None
        except requests.Timeout:
            raise ApiError(None, f"{self.base_url} did not answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise ApiError(None, f"request to {url} failed: {exc}") from None
        if response.status_code >= 400:
            if bare and response.status_code in bare and not response.content.strip():
                raise ApiError(response.status_code, bare[response.status_code])
            raise ApiError(response.status_code, error_message(response))
        body: Any = None
        if response.content.strip():
            try:
                body = response.json()
            except ValueError:
                raise ApiError(
                    response.status_code, f"{method} {url} answered {response.status_code} with a body that is not JSON"
                ) from None
        return Response(response.status_code, body, response.headers)


def _no_instance(instance_id: str) -> str:
    return f"no task with id {instance_id!r} (unknown, or its history was purged)"
