"""Turning an HTTP request into a task submission, or into a 400 that says exactly what is wrong.

Pure functions over bytes, headers and query parameters, so every rule is tested without a host.
Everything a client can get wrong is caught here, before an orchestration exists; what can only be
known later (a blob that does not exist, a file that is not really an image) fails that one image.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts import ImageSource
from inference.catalog import NUM_CLASSES, normalise_model_name
from inference.errors import UnknownModelError
from messaging.replies import ReplyError, check_reply_to
from settings import Settings
from storage.blobs import InvalidBlobNameError, split_blob_name
from storage.models import nvarchar_units
from url_policy import UrlNotAllowedError, check_url_allowed

DEFAULT_TOP_K = 5
TASK_FIELDS = ("models", "model", "model_type", "images", "top_k", "task_id", "session", "reply_to")
IMAGE_FIELDS = ("blob", "url", "data", "name")
#: ASCII digits only (``str.isdigit`` also accepts "²", which ``int`` refuses); 9 digits fit any limit.
_SMALL_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
#: Seconds as ASCII decimals: ``float()`` would also take "nan", "inf", "1_0" and Arabic-Indic digits.
_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Names a client chooses (``task_id``, ``session``): valid in instance ids and URLs, never an entity id.
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The ``ImageName`` column's length: a longer name or URL (the default name) could not be stored.
MAX_IMAGE_TEXT_CHARS = 2048


class RequestError(ValueError):
    """A client mistake; ``field`` names the part of the request that is wrong."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class ImageInput:
    """An image as submitted: a reference (blob or URL) or bytes the starter must store first."""

    source: ImageSource | None = None
    data: bytes | None = None
    name: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Routing:
    """Where a task runs and where its outcome goes; all optional."""

    task_id: str | None = None  # the client's id: the instance id, so the same id never starts twice
    session: str | None = None  # tasks of one session run one at a time, in submission order
    reply_to: str | None = None  # a queue name or a callback URL


@dataclass(frozen=True)
class TaskSubmission:
    models: list[str]
    images: list[ImageInput]
    top_k: int
    routing: Routing = Routing()


def parse_client_name(value: Any, field: str) -> str | None:
    """A ``task_id`` or ``session``: 1-64 letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit."""
    if value is None:
        return None
    if not isinstance(value, str) or not _CLIENT_NAME.fullmatch(value):
        raise RequestError(
            f"'{field}' must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, "
            f"got {describe(value)}",
            field,
        )
    return value


def parse_reply_to(value: Any, settings: Settings) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RequestError("'reply_to' must be a queue name or a callback URL", "reply_to")
    check_text(value, "reply_to", MAX_IMAGE_TEXT_CHARS)
    try:
        check_reply_to(value, settings)
    except ReplyError as exc:
        raise RequestError(f"'reply_to': {exc}", "reply_to") from None
    return value


def parse_task_id(value: Any) -> str | None:
    """A client's ``task_id``; digits alone are refused, being how ``GET /api/tasks/{id}`` names a TaskID."""
    task_id = parse_client_name(value, "task_id")
    if task_id is not None and task_id.isdigit():
        raise RequestError(
            f"'task_id' must not be digits only ({describe(task_id)}): GET /api/tasks/<digits> reads the "
            "database's TaskID; add a letter",
            "task_id",
        )
    return task_id


def parse_routing(fields: Mapping[str, Any], settings: Settings) -> Routing:
    """The message-driven fields, from a JSON body or a query string alike."""
    return Routing(
        task_id=parse_task_id(fields.get("task_id")),
        session=parse_client_name(fields.get("session"), "session"),
        reply_to=parse_reply_to(fields.get("reply_to"), settings),
    )


def parse_models(value: Any, field: str) -> list[str]:
    """One name, a comma-separated string of names (how answers and the ``ModelType`` column write several:
    ``"ResNet18,ResNet50"``, which a client may send back), or a list of names."""
    names = [name.strip() for name in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RequestError(f"'{field}' must be a model name or a non-empty list of model names", field)
    models: list[str] = []
    for name in names:
        try:
            canonical = normalise_model_name(name)
        except UnknownModelError as exc:
            raise RequestError(str(exc), field) from None
        if canonical not in models:
            models.append(canonical)
    return models


def describe(value: Any) -> str:
    """A short, safe rendering of a client's value for an error message: never a huge or deep repr."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(value) if isinstance(value, str) or len(str(abs(value))) <= 40 else "a huge number"
    return text if len(text) <= 40 else f"{text[:37]}..."


def listed(names: list[str], most: int = 5) -> str:
    """Names a client sent, for an error message: a few, each shortened, and how many more (a body of 20,000
    unknown keys must not get an answer of megabytes)."""
    shown = ", ".join(describe(name) for name in names[:most])
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return f"[{shown}{more}]"


#: Query parameters of every submission: ``wait``, and ``code``, the function key Azure reads from the query.
QUERY_ALWAYS = ("wait", "code")
#: Query parameters a raw image upload reads (a JSON body carries these fields itself).
QUERY_OF_AN_UPLOAD = ("model", "models", "top_k", "name", "task_id", "session", "reply_to", *QUERY_ALWAYS)


def check_query(query: Mapping[str, str], allowed: tuple[str, ...], why: str) -> None:
    """A parameter the submission does not read is refused, never ignored: a ``task_id`` in the query of a JSON
    submission would otherwise lose its idempotency silently, and ``?topk=3`` its top 3."""
    unknown = sorted(name for name in query if name not in allowed and name.lower() != "code")  # Azure: any case
    if unknown:
        raise RequestError(
            f"query parameter(s) {listed(unknown)} are not read {why}; allowed: {list(allowed)}", unknown[0][:64]
        )


def parse_top_k(value: Any, settings: Settings) -> int:
    """An int, or a string of ASCII digits (the query string's form); ``"²"`` or ``"--5"`` are not numbers."""
    if value is None:
        return DEFAULT_TOP_K
    if isinstance(value, str) and _SMALL_INTEGER.fullmatch(value.strip()):
        value = int(value)
    limit = min(settings.max_top_k, NUM_CLASSES)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise RequestError(f"'top_k' must be an integer from 1 to {limit}, got {describe(value)}", "top_k")
    return value


def check_image_size(size: int, settings: Settings, what: str, field: str) -> None:
    if size == 0:
        raise RequestError(f"{what} is empty", field)
    if size > settings.max_image_bytes:
        raise RequestError(
            f"{what} is {size} bytes, over the {settings.max_image_bytes}-byte limit (MAX_IMAGE_BYTES)",
            field,
        )


def decode_base64_image(text: Any, settings: Settings, field: str) -> tuple[bytes, str | None]:
    """Decode strict base64, accepting a ``data:image/...;base64,`` URL prefix as browsers send it."""
    if not isinstance(text, str):
        raise RequestError(f"'{field}' must be a base64 string", field)
    content_type = None
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(f"'{field}' is a data URL that is not base64", field)
        content_type = header[5:-7] or None
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"'{field}' is not valid base64", field) from None
    check_image_size(len(data), settings, f"'{field}'", field)
    return data, content_type


def check_text(value: str, field: str, max_chars: int) -> None:
    """A client's string must fit where it is stored and be valid Unicode: JSON lets a lone surrogate
    (``"\\ud800"``) through, which no database, blob name or UTF-8 encoder accepts."""
    length = nvarchar_units(value)  # as the database column counts it
    if length > max_chars:
        raise RequestError(
            f"'{field}' is {length} characters long (UTF-16 units: an emoji counts 2), over the limit of {max_chars}",
            field,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"'{field}' is not valid Unicode (it holds a lone surrogate escape)", field) from None


def parse_image(item: Any, position: int, settings: Settings) -> ImageInput:
    field = f"images[{position}]"
    if not isinstance(item, dict):
        raise RequestError(f"'{field}' must be an object with one of 'blob', 'url' or 'data'", field)
    unknown = sorted(set(item) - set(IMAGE_FIELDS))
    if unknown:
        raise RequestError(f"'{field}' has unknown field(s) {listed(unknown)}; allowed: {list(IMAGE_FIELDS)}", field)
    given = [key for key in ("blob", "url", "data") if key in item]
    if len(given) != 1:
        raise RequestError(f"'{field}' must have exactly one of 'blob', 'url' or 'data'", field)
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise RequestError(f"'{field}.name' must be a string", f"{field}.name")
    if name is not None:
        check_text(name, f"{field}.name", MAX_IMAGE_TEXT_CHARS)
    key = given[0]
    value = item[key]
    if key == "data":
        data, content_type = decode_base64_image(value, settings, f"{field}.data")
        return ImageInput(data=data, name=name, content_type=content_type)
    if not isinstance(value, str) or not value:
        raise RequestError(f"'{field}.{key}' must be a non-empty string", f"{field}.{key}")
    check_text(value, f"{field}.{key}", MAX_IMAGE_TEXT_CHARS)
    if key == "blob":
        try:
            split_blob_name(value)
        except InvalidBlobNameError as exc:
            raise RequestError(f"'{field}.blob': {exc}", f"{field}.blob") from None
        return ImageInput(source=ImageSource(blob=value, name=name or value))
    try:
        check_url_allowed(value, settings.url_allowed_hosts)
    except UrlNotAllowedError as exc:
        raise RequestError(f"'{field}.url': {exc}", f"{field}.url") from None
    return ImageInput(source=ImageSource(url=value, name=name or value))


def parse_json_submission(body: bytes, settings: Settings) -> TaskSubmission:
    """Parse ``{"models": [...] | "model": ... | "model_type": ..., "images": [...], "top_k": k}``, and the
    optional ``task_id``, ``session`` and ``reply_to`` (also the body of a queue message)."""
    if not body:
        raise RequestError("the request body is empty; send JSON or the bytes of an image")
    try:
        document = json.loads(body)
    except RecursionError:  # the parser's own depth guard: 100,000 nested "[" must not be a 500
        raise RequestError("the request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer over Python's 4,300-digit limit
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RequestError("the request body must be a JSON object")
    unknown = sorted(set(document) - set(TASK_FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {listed(unknown)}; allowed: {list(TASK_FIELDS)}", unknown[0][:64])
    model_fields = [key for key in ("models", "model", "model_type") if key in document]
    if len(model_fields) != 1:
        raise RequestError("give the model(s) in exactly one of 'models', 'model' or 'model_type'", "models")
    models = parse_models(document[model_fields[0]], model_fields[0])
    images = document.get("images")
    if not isinstance(images, list) or not images:
        raise RequestError("'images' must be a non-empty list", "images")
    if len(images) > settings.max_images_per_task:
        raise RequestError(
            f"'images' has {len(images)} entries, over the limit of {settings.max_images_per_task} "
            "(MAX_IMAGES_PER_TASK)",
            "images",
        )
    return TaskSubmission(
        models=models,
        images=[parse_image(item, i, settings) for i, item in enumerate(images)],
        top_k=parse_top_k(document.get("top_k"), settings),
        routing=parse_routing(document, settings),
    )


def parse_image_upload(body: bytes, content_type: str, query: Mapping[str, str], settings: Settings) -> TaskSubmission:
    """Parse a raw image body (``Content-Type: image/*``) with models and top_k in the query."""
    check_query(query, QUERY_OF_AN_UPLOAD, "with an image upload")
    check_image_size(len(body), settings, "the uploaded image", "body")
    if "models" in query and "model" in query:  # as in a JSON body: which one was meant is not for us to guess
        raise RequestError("give the model(s) in exactly one of ?model= or ?models=", "model")
    model_value = query.get("models") or query.get("model")
    if not model_value:
        raise RequestError("name the model(s) with ?model=resnet50 or ?models=resnet18,resnet50", "model")
    models = parse_models([m.strip() for m in model_value.split(",") if m.strip()], "model")
    name = query.get("name") or "upload"
    check_text(name, "name", MAX_IMAGE_TEXT_CHARS)
    return TaskSubmission(
        models=models,
        images=[ImageInput(data=body, name=name, content_type=content_type)],
        top_k=parse_top_k(query.get("top_k"), settings),
        routing=parse_routing(query, settings),
    )


def parse_submission(body: bytes, content_type: str, query: Mapping[str, str], settings: Settings) -> TaskSubmission:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith("image/"):
        return parse_image_upload(body, media_type, query, settings)
    if media_type in ("", "application/json", "text/json") or media_type.endswith("+json"):
        check_query(query, QUERY_ALWAYS, "with a JSON body: put the fields in the body")
        return parse_json_submission(body, settings)
    raise RequestError(f"unsupported Content-Type {content_type!r}: send application/json or image/*", "Content-Type")


def parse_wait(query: Mapping[str, str], settings: Settings) -> float | None:
    """Seconds to wait for the result (synchronous mode), capped at ``SYNC_WAIT_MAX_SECONDS``."""
    raw = query.get("wait")
    if raw is None or raw == "":
        return None
    if not _SECONDS.fullmatch(raw.strip()):
        raise RequestError(f"'wait' must be a number of seconds, got {describe(raw)}", "wait")
    seconds = float(raw)
    if seconds < 0:
        raise RequestError(f"'wait' must not be negative, got {describe(raw)}", "wait")
    return min(seconds, settings.sync_wait_max_seconds)
