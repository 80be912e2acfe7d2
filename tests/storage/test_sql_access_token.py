"""Azure SQL with an Entra access token: the token packing msodbcsql reads, the connection string without
sign-in keywords, the marker in SQL_CONNECTION_STRING, and the ``do_connect`` handler on a real pooled
``mssql+pyodbc`` engine.

No SQL Server and no Microsoft ODBC driver exist here, so each connection attempt ends in unixODBC's
"can't open lib" error. That error comes from ``pyodbc.connect`` itself, after pyodbc accepted the
``attrs_before`` the handler put in: a listener added after the handler records what pyodbc was given.
The default credential is tested against a loopback HTTP server that answers like the identity endpoint
Azure Functions gives an app (``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER``)."""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from storage.credential import credential_for, shared_credential
from storage.database import POOL_SIZE, create_pooled_engine, get_engine
from storage.sql_access_token import (
    AZURE_SQL_SCOPE,
    SQL_COPT_SS_ACCESS_TOKEN,
    pack_access_token,
    uses_access_token,
    without_marker,
    without_sign_in,
)

pytestmark = pytest.mark.unit

DRIVER = "ODBC Driver 18 for SQL Server"
CLIENT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def token_url(server: str = "sql-example.database.windows.net", extra: str = "") -> str:
    return (
        f"mssql+pyodbc://@{server}:1433/classifier?driver={DRIVER.replace(' ', '+')}&Encrypt=yes"
        f"&authentication=ActiveDirectoryAccessToken{extra}"
    )


def test_token_packing_byte_for_byte() -> None:
    assert pack_access_token("ab") == b"\x04\x00\x00\x00a\x00b\x00"
    assert pack_access_token("") == b"\x00\x00\x00\x00"
    token = "eyJ0eXAiOiJKV1QifQ." + "x" * 300  # longer than 255 bytes: the length is a 4-byte integer
    packed = pack_access_token(token)
    (length,) = struct.unpack("<I", packed[:4])
    assert length == 2 * len(token) == len(packed) - 4
    assert packed[4:].decode("utf-16-le") == token


@pytest.mark.parametrize(
    ("odbc", "expected"),
    [
        (
            "DRIVER={ODBC Driver 18 for SQL Server};Server=s,1433;Database=d;Trusted_Connection=Yes;Encrypt=yes",
            "DRIVER={ODBC Driver 18 for SQL Server};Server=s,1433;Database=d;Encrypt=yes",
        ),
        ("Server=s;UID=u;PWD={p;w}}d};authentication=ActiveDirectoryMsi;Database=d", "Server=s;Database=d"),
        ("Server=s; trusted_connection = yes ;Database=d", "Server=s;Database=d"),
    ],
)
def test_the_connection_string_loses_every_sign_in_keyword(odbc: str, expected: str) -> None:
    """A braced value may hold ``;`` and ``}}``; keywords match in any case, as the driver reads them."""
    assert without_sign_in(odbc) == expected


def test_the_marker_selects_the_token_path_and_is_removed() -> None:
    url = make_url(token_url())
    assert uses_access_token(url)
    assert uses_access_token(make_url(token_url().replace("authentication=", "Authentication=")))
    assert not uses_access_token(make_url(token_url().replace("AccessToken", "Msi")))
    assert not uses_access_token(make_url("sqlite:///results.db"))
    stripped = without_marker(url)
    assert dict(stripped.query) == {"driver": DRIVER, "Encrypt": "yes"}
    assert stripped.host == url.host and stripped.database == "classifier" and stripped.port == 1433


@pytest.mark.parametrize(
    "url",
    [
        token_url().replace("//@", "//user:secret@"),
        token_url().replace("//@", "//user@"),
        "sqlite:///results.db?authentication=ActiveDirectoryAccessToken",
    ],
)
def test_a_token_url_with_another_sign_in_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="ActiveDirectoryAccessToken"):
        create_pooled_engine(url, credential=StaticCredential("unused"))


class StaticCredential:
    """A ``TokenCredential`` handing out one token and remembering the scopes it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def pyodbc() -> Any:
    """pyodbc loads unixODBC's libodbc.so.2 when imported."""
    return pytest.importorskip(
        "pyodbc", reason="pyodbc needs libodbc.so.2: apt-get install unixodbc (make test installs it)"
    )


def record_connect_arguments(engine: Engine) -> list[tuple[list[Any], dict[str, Any]]]:
    """What each connection attempt passes to ``pyodbc.connect``: a ``do_connect`` listener added after the
    engine's own runs last and sees the arguments as they are handed to the driver."""
    seen: list[tuple[list[Any], dict[str, Any]]] = []

    @event.listens_for(engine, "do_connect")
    def _record(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        seen.append((list(cargs), dict(cparams)))

    return seen


def fail_at_the_missing_driver(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as failure:
        engine.connect().close()
    assert "Can't open lib" in str(failure.value) and DRIVER in str(failure.value), failure.value


def test_each_new_connection_gets_the_token_and_no_sign_in_keyword(pyodbc: Any) -> None:
    credential = StaticCredential("header.claims.signature")
    engine = create_pooled_engine(token_url(), credential=credential)
    seen = record_connect_arguments(engine)
    fail_at_the_missing_driver(engine)
    fail_at_the_missing_driver(engine)
    assert credential.scopes == [(AZURE_SQL_SCOPE,)] * 2  # asked once per connection the pool opens
    assert len(seen) == 2
    for cargs, cparams in seen:
        assert cargs == [
            f"DRIVER={{{DRIVER}}};Server=sql-example.database.windows.net,1433;Database=classifier;Encrypt=yes"
        ]
        assert cparams["attrs_before"] == {SQL_COPT_SS_ACCESS_TOKEN: pack_access_token("header.claims.signature")}
    # The pool is the app's usual one: 8 kept, 24 more on demand.
    assert engine.pool.size() == POOL_SIZE and engine.pool._max_overflow == 24  # type: ignore[attr-defined]
    assert engine.dialect.fast_executemany  # type: ignore[attr-defined]


def test_the_driver_s_own_managed_identity_path_is_left_alone(pyodbc: Any) -> None:
    """``authentication=ActiveDirectoryMsi`` goes to the driver as written, with the client id as UID."""
    url = f"mssql+pyodbc://{CLIENT_ID}@sql-msi.database.windows.net:1433/classifier?driver={DRIVER}&authentication=ActiveDirectoryMsi"
    engine = create_pooled_engine(url)
    seen = record_connect_arguments(engine)
    fail_at_the_missing_driver(engine)
    ((cargs, cparams),) = seen
    assert f"UID={CLIENT_ID}" in cargs[0] and "authentication=ActiveDirectoryMsi" in cargs[0]
    assert "attrs_before" not in cparams


class IdentityEndpoint(ThreadingHTTPServer):
    """The identity endpoint Azure Functions gives an app: GET with ``resource`` and ``client_id``,
    the secret from ``IDENTITY_HEADER`` in ``X-IDENTITY-HEADER``."""

    daemon_threads = True

    def __init__(self, token: str, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _IdentityHandler)
        self.token = token
        self.secret = secret
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/msi/token"


class _IdentityHandler(BaseHTTPRequestHandler):
    server: IdentityEndpoint

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.server.requests.append({"path": parts.path, "query": query, "secret": self.headers["X-IDENTITY-HEADER"]})
        authorised = self.headers["X-IDENTITY-HEADER"] == self.server.secret
        body = json.dumps(
            {
                "access_token": self.server.token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": query.get("resource", ""),
                "token_type": "Bearer",
                "client_id": query.get("client_id", ""),
            }
            if authorised
            else {"error": "unauthorized"}
        ).encode()
        self.send_response(200 if authorised else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# Settings that would make DefaultAzureCredential sign in some other way before the managed identity.
OTHER_CREDENTIAL_SETTINGS = [
    "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TOKEN_CREDENTIALS", "MSI_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT",
]  # fmt: skip


@pytest.fixture
def identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEndpoint]:
    """The environment of a function app with a user-assigned identity (what infra/ sets up)."""
    server = IdentityEndpoint(token=f"sql-token-{uuid.uuid4().hex}", secret=uuid.uuid4().hex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in OTHER_CREDENTIAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", server.url)
    monkeypatch.setenv("IDENTITY_HEADER", server.secret)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    credential_for.cache_clear()  # the shared credential reads this environment when it is made
    try:
        yield server
    finally:
        credential_for.cache_clear()
        server.shutdown()
        server.server_close()


def test_the_app_s_engine_signs_in_as_its_managed_identity(pyodbc: Any, identity_endpoint: IdentityEndpoint) -> None:
    """``get_engine`` with the URL infra/ sets: DefaultAzureCredential asks the identity endpoint for an Azure
    SQL token for the identity in AZURE_CLIENT_ID, once; later connections reuse the cached token."""
    engine = get_engine(token_url(server=f"sql-{uuid.uuid4().hex[:8]}.database.windows.net"))
    seen = record_connect_arguments(engine)
    for _ in range(3):
        fail_at_the_missing_driver(engine)
    assert identity_endpoint.requests == [
        {
            "path": "/msi/token",
            "query": {"api-version": "2019-08-01", "resource": "https://database.windows.net", "client_id": CLIENT_ID},
            "secret": identity_endpoint.secret,
        }
    ]
    assert [cparams["attrs_before"] for _, cparams in seen] == [
        {SQL_COPT_SS_ACCESS_TOKEN: pack_access_token(identity_endpoint.token)}
    ] * 3
    assert all("Trusted_Connection" not in cargs[0] for cargs, _ in seen)
    # The engine's credential is the process's shared one (the blob store's and the queues'): it has the token.
    assert shared_credential().get_token(AZURE_SQL_SCOPE).token == identity_endpoint.token
    assert len(identity_endpoint.requests) == 1
