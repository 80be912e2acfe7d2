"""Blob storage with an Entra token instead of an account key, the way the app reaches its storage account on
Azure (BLOB_ACCOUNT_URL + the managed identity). Azurite stands in for the account: over HTTPS, with
`--oauth basic` it accepts bearer tokens only when their issuer, audience and lifetime are right, so a
credential that sends the wrong token fails here as it would on Azure."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import DefaultAzureCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from storage.blobs import AzureBlobStore, open_blob_store
from tests.fixtures.azurite import ACCOUNT_NAME, _wait_for_port, _wait_until_accepting, azurite_executable

pytestmark = pytest.mark.azurite

STORAGE_SCOPE = "https://storage.azure.com/.default"


class FakeEntraCredential:
    """A TokenCredential that mints an unsigned token shaped like Entra's (Azurite checks the claims, not the
    signature) and records the scopes it was asked for."""

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.audience = audience
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        expires = now + 3600
        claims = {
            "aud": self.audience,
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": expires,
            "oid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        }
        parts = [{"alg": "none", "typ": "JWT"}, claims]
        token = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode() for p in parts)
        return AccessToken(token + ".", expires)


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(account URL, CA certificate) of an HTTPS Azurite that requires bearer tokens."""
    executable = azurite_executable()
    if not executable.exists():
        pytest.fail(f"Azurite not found at {executable}: run `npm ci` at the repository root", pytrace=False)
    workdir = tmp_path_factory.mktemp("azurite-oauth")
    cert, key = _self_signed_certificate(workdir)
    log = workdir / "azurite.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(executable),
                "--blobHost", "127.0.0.1",
                "--blobPort", "0",
                "--cert", str(cert),
                "--key", str(key),
                "--oauth", "basic",
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--silent",
                "--loose",
                "--disableTelemetry",
            ],
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        port = _wait_for_port(log, process)
        _wait_until_accepting("127.0.0.1", port)
        yield f"https://127.0.0.1:{port}/{ACCOUNT_NAME}", cert
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def account_url(oauth_azurite: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    url, cert = oauth_azurite
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust the test certificate (requests reads this)
    return url


def test_store_reads_and_writes_with_an_entra_token(account_url: str) -> None:
    credential = FakeEntraCredential()
    store = AzureBlobStore(account_url=account_url, credential=credential)
    try:
        store.put("uploads/task-1/a.jpg", b"image bytes", content_type="image/jpeg")  # creates the container
        store.put("uploads/task-1/b.jpg", b"more bytes")
        assert store.get("uploads/task-1/a.jpg") == b"image bytes"
        assert store.exists("uploads/task-1/b.jpg")
        assert store.delete_prefix("uploads/task-1/") == 2
        assert not store.exists("uploads/task-1/a.jpg")
    finally:
        store.close()
    assert credential.scopes and set(credential.scopes) == {(STORAGE_SCOPE,)}


def test_a_token_for_another_audience_is_refused(account_url: str) -> None:
    store = AzureBlobStore(account_url=account_url, credential=FakeEntraCredential("https://vault.azure.net"))
    try:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)) as refused:
            store.put("uploads/task-2/a.jpg", b"image bytes")
        assert refused.value.status_code in (401, 403)
    finally:
        store.close()


def test_settings_with_an_account_url_sign_in_with_default_azure_credential(tmp_path: Path) -> None:
    """What the app does on Azure: no connection string, BLOB_ACCOUNT_URL set; DefaultAzureCredential then
    uses the managed identity that AZURE_CLIENT_ID names."""
    store = open_blob_store("", tmp_path, account_url=" https://stexample.blob.core.windows.net/ ")
    assert isinstance(store, AzureBlobStore)
    assert store.account_url == "https://stexample.blob.core.windows.net/"
    assert isinstance(store._service.credential, DefaultAzureCredential)
    store.close()


def test_a_connection_string_still_wins_for_local_use(tmp_path: Path) -> None:
    store = open_blob_store(
        "UseDevelopmentStorage=true", tmp_path, account_url="https://stexample.blob.core.windows.net/"
    )
    assert isinstance(store, AzureBlobStore)
    assert store.account_url.startswith("http://127.0.0.1:10000/devstoreaccount1")
    store.close()


def test_a_store_needs_a_connection_string_or_a_url_with_a_credential() -> None:
    with pytest.raises(ValueError, match="connection string, or an account URL and a credential"):
        AzureBlobStore(account_url="https://stexample.blob.core.windows.net/")
