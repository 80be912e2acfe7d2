"""Azure SQL with an Entra access token from ``azure-identity``, handed to the ODBC driver by pyodbc.

A ``mssql+pyodbc`` URL whose query has ``authentication=ActiveDirectoryAccessToken`` selects this path.
That value is this app's marker, not an ODBC driver keyword: the marker is taken out of the URL, and a
SQLAlchemy ``do_connect`` handler gives every new pooled connection a token through the connection
attribute ``SQL_COPT_SS_ACCESS_TOKEN``. The driver then requires a connection string without ``UID``,
``PWD``, ``Authentication`` or ``Trusted_Connection``, so the handler removes them.

Why not the driver's own ``Authentication=ActiveDirectoryMsi``: the credential here is the one the blob
store uses (``DefaultAzureCredential``: on Azure the managed identity named by ``AZURE_CLIENT_ID``, through
whichever identity endpoint the host provides; on a laptop ``az login``, which the driver cannot use). The
managed-identity credential caches its token and renews it before it expires; ``az login`` is asked once
per new connection. A token is checked only when a connection opens, so the pool's connections (kept for
up to 30 minutes) never need a token to outlive them.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from azure.core.credentials import TokenCredential
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

#: The ``authentication`` value of a SQLAlchemy URL that selects the access-token path.
ACCESS_TOKEN_AUTHENTICATION = "ActiveDirectoryAccessToken"
#: msodbcsql's pre-connect attribute for an Entra access token (``msodbcsql.h``).
SQL_COPT_SS_ACCESS_TOKEN = 1256
#: The scope of Azure SQL Database tokens (public cloud).
AZURE_SQL_SCOPE = "https://database.windows.net/.default"

# Connection-string keywords that sign in some other way; the driver refuses them next to a token.
_SIGN_IN_KEYWORDS = frozenset({"uid", "pwd", "authentication", "trusted_connection"})
# One ``key=value`` attribute of an ODBC connection string; a value in braces may contain ``;`` (``}}`` escapes ``}``).
_ATTRIBUTE = re.compile(r"(?:[^;{]|\{(?:[^}]|\}\})*\})+")


def uses_access_token(url: URL) -> bool:
    """Whether ``url`` asks for the access-token path (the ``authentication`` query value, any case)."""
    return any(
        key.lower() == "authentication" and str(value).lower() == ACCESS_TOKEN_AUTHENTICATION.lower()
        for key, value in url.query.items()
    )


def without_marker(url: URL) -> URL:
    """``url`` without the marker, checked to carry no other way of signing in."""
    if url.get_backend_name() != "mssql":
        raise ValueError(f"authentication={ACCESS_TOKEN_AUTHENTICATION} is for mssql+pyodbc URLs, not {url.drivername}")
    if url.username or url.password:
        raise ValueError(
            f"authentication={ACCESS_TOKEN_AUTHENTICATION} signs in with a token: "
            "leave the user name and password out of SQL_CONNECTION_STRING"
        )
    return url.difference_update_query([key for key in url.query if key.lower() == "authentication"])


def pack_access_token(token: str) -> bytes:
    """The token as msodbcsql reads it: UTF-16-LE bytes after their length, a 4-byte little-endian integer."""
    encoded = token.encode("utf-16-le")
    return struct.pack(f"<I{len(encoded)}s", len(encoded), encoded)


def without_sign_in(odbc_connection_string: str) -> str:
    """The ODBC connection string less its sign-in keywords (SQLAlchemy adds ``Trusted_Connection=Yes``
    to a URL without a user)."""
    attributes = _ATTRIBUTE.findall(odbc_connection_string)
    return ";".join(a for a in attributes if a.split("=", 1)[0].strip().lower() not in _SIGN_IN_KEYWORDS)


def install_access_token(engine: Engine, credential: TokenCredential) -> None:
    """Sign every new connection of ``engine`` in with a token from ``credential``.

    The handler runs for each DBAPI connection the pool opens (not for each checkout), so a pooled
    connection is authenticated once, with a token that is valid when it opens.
    """

    @event.listens_for(engine, "do_connect")
    def _provide_token(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        cargs[0] = without_sign_in(cargs[0])
        token = credential.get_token(AZURE_SQL_SCOPE).token
        cparams["attrs_before"] = {
            **cparams.get("attrs_before", {}),
            SQL_COPT_SS_ACCESS_TOKEN: pack_access_token(token),
        }
