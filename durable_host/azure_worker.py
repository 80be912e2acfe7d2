"""Microsoft's Python worker (``azure-functions-runtime``) as the judge of the app.

On Azure, Python 3.13+ apps run in this worker: it imports ``function_app.py``, checks every
function (parameters against bindings, annotations against binding types) and, on the first
error, loads no function at all; at each invocation it turns trigger data into arguments and
return values into output data with the converters ``azure-functions`` registers. The host calls
the same code, so an app the worker refuses does not start here either, and a value the worker
cannot convert fails here too.

Where the library is not installed (it needs Python 3.13+), the host imports the app itself with
the worker's messages, converts with ``azure-functions``' registered converters directly (what
the worker looks up) and logs once that the load checks were skipped.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func

log = logging.getLogger("durable_host")
#: The logger of Microsoft's worker library (``azure_functions_runtime.logging.SDK_LOG_PREFIX``).
WORKER_LOGGER = "azure.functions"

# The worker library ships no type information (no py.typed, no stubs). It is imported here and
# nowhere else, as modules typed ``Any``; every value that leaves this module is annotated with
# the ``azure-functions`` type it is (``func.Function``, ``func.HttpRequest``, ``func.meta.Datum``).
_worker_functions: Any
_worker_loader: Any
_worker_meta: Any
_WorkerDatum: Any
try:
    _worker_functions = importlib.import_module("azure_functions_runtime.functions")
    _worker_loader = importlib.import_module("azure_functions_runtime.loader")
    _worker_meta = importlib.import_module("azure_functions_runtime.bindings.meta")
    _WorkerDatum = importlib.import_module("azure_functions_runtime.bindings.datumdef").Datum
except ImportError:  # Python < 3.13, or an environment without the worker library
    _worker_functions = _worker_loader = _worker_meta = _WorkerDatum = None

# ``azure.functions.get_binding_registry`` has no annotations; this is its type.
_binding_registry: Callable[[], Any] = func.get_binding_registry

WORKER_LIBRARY = _worker_meta is not None

# The load checks read three values of the host protocol's BindingInfo enums (directions and the
# "undefined" data type), which the Functions host would send over gRPC; nothing else of it.
_PROTOS = types.SimpleNamespace(BindingInfo=types.SimpleNamespace(**{"in": 0, "out": 1, "inout": 2, "undefined": 0}))


class IndexingError(Exception):
    """The app cannot be hosted: the worker's own message, or the host's, naming the function."""


def _ensure_registry() -> None:
    if WORKER_LIBRARY and _worker_meta.BINDING_REGISTRY is None:
        _worker_meta.load_binding_registry()


def index_app(app_dir: Path, script_file: str) -> list[func.Function]:
    """Import the script and return its functions, as the worker's ``index_function_app`` does."""
    script = app_dir / script_file
    if not script.is_file():
        raise IndexingError(f"{script_file} not found in {app_dir}")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    _ensure_registry()
    held = _HeldErrors()
    worker_log = logging.getLogger(WORKER_LOGGER)
    worker_log.addFilter(held)
    try:
        if WORKER_LIBRARY:
            functions: list[func.Function] = _worker_loader.index_function_app(str(script))
        else:
            functions = _index_without_worker(script)
    except Exception as exc:  # the app's own import failed, or the worker's "no app" / "more than one app"
        raise IndexingError(_failure_message(exc, script)) from exc
    finally:
        worker_log.removeFilter(held)
    for record in held.records:  # errors the worker logged but survived: said as it said them
        worker_log.handle(record)
    return functions


class _HeldErrors(logging.Filter):
    """Holds back the errors the worker logs while it indexes the app.

    When the app's import fails, the worker logs the error with its traceback through the host's and its own
    frames, then raises it: the refusal (:func:`_failure_message`) says the same with the app's frames only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        self.records.append(record)
        return False


def _failure_message(exc: Exception, script: Path) -> str:
    """What the worker said, and, when the app itself failed while it was imported, where it did.

    A developer needs the app's lines, not the host's and the worker's frames above them: the frames from the
    script's own down to where the error was raised (a module or library the script called included), the
    error as Python shows it (a syntax error with its line and caret), and the errors it was raised from.
    The worker's own refusals (no app object, two) come from no frame of the script: their message alone.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    starts = [i for i, frame in enumerate(frames) if _same_file(frame.filename, script)]
    if not starts and not isinstance(exc, SyntaxError):
        return str(exc) or type(exc).__name__
    lines = traceback.format_list(frames[starts[0] :]) if starts else []
    lines += traceback.format_exception_only(exc)
    seen, cause = {id(exc)}, _cause_of(exc)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if str(cause) not in str(exc):  # not the error the worker re-raised with its advice appended
            lines += ["raised from ", *traceback.format_exception_only(cause)]
        cause = _cause_of(cause)
    said = f"{script.name} raised {type(exc).__name__} while it was imported (Azure's worker refuses the app too)"
    return f"{said}:\n" + "".join(lines).rstrip()


def _cause_of(exc: BaseException) -> BaseException | None:
    """The error ``exc`` was raised from, or during the handling of (unless suppressed), as tracebacks show."""
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _same_file(filename: str, script: Path) -> bool:
    """Whether a traceback's ``filename`` is ``script`` (relative paths and symlinks resolved)."""
    return os.path.realpath(filename) == os.path.realpath(script)


def _index_without_worker(script: Path) -> list[func.Function]:
    """The worker's ``index_function_app``, with its messages, for when the library is absent."""
    module = importlib.import_module(script.stem)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) > 1:
        raise ValueError(
            f"More than one {type(apps[0]).__name__} or other top level function app instances are defined."
        )
    if not apps:
        raise ValueError(f"Could not find top level function app instances in {script.name}.")
    return apps[0].get_functions()


def check_functions(functions: list[func.Function]) -> None:
    """Run the worker's load-time checks on every function; the first refusal is an error.

    Azure's worker registers functions one by one and a refused function fails the whole app,
    so the host refuses to start with the same message.
    """
    if not WORKER_LIBRARY:
        log.warning(
            "azure-functions-runtime is not installed (it needs Python 3.13+): the "
            "worker's load checks were skipped, so Azure may still refuse this app"
        )
        return
    _ensure_registry()
    registry = _worker_functions.Registry()
    for function in functions:
        try:
            registry.add_indexed_function(function=function, protos=_PROTOS)
        except _worker_functions.FunctionLoadError as exc:
            raise IndexingError(str(exc)) from exc


def _datum(value: Any, data_type: str) -> Any:
    return _WorkerDatum(value, data_type) if WORKER_LIBRARY else func.meta.Datum(value, data_type)


def decode(binding: str, data_type: str, value: Any, trigger_metadata: dict[str, tuple[Any, str]] | None = None) -> Any:
    """Trigger or input data (a ``TypedData`` on Azure) to the argument the function receives.

    ``trigger_metadata`` maps each name the Functions host sends (``DequeueCount``...) to its value
    and ``TypedData`` type.
    """
    if WORKER_LIBRARY:
        _ensure_registry()
        converter = _worker_meta.get_binding(binding)
    else:
        converter = _binding_registry().get(binding)
    metadata = {name: _datum(item, item_type) for name, (item, item_type) in (trigger_metadata or {}).items()}
    return converter.decode(_datum(value, data_type), trigger_metadata=metadata)


def decode_http_request(
    method: str, url: str, headers: dict[str, str], query: dict[str, str], route_params: dict[str, str], body: bytes
) -> func.HttpRequest:
    """The ``RpcHttp`` the Functions host sends (body as bytes: the worker asks for raw bodies)."""

    def strings(values: dict[str, str]) -> dict[str, Any]:
        return {key: _datum(value, "string") for key, value in values.items()}

    request: func.HttpRequest = decode(
        "httpTrigger",
        "http",
        {
            "method": _datum(method, "string"),
            "url": _datum(url, "string"),
            "headers": strings(headers),
            "query": strings(query),
            "params": strings(route_params),
            "body": _datum(body, "bytes"),
        },
    )
    return request


def encode(binding: str, value: Any) -> func.meta.Datum:
    """A return value to output data, or ``TypeError``/``ValueError`` where the worker fails too."""
    if WORKER_LIBRARY:
        _ensure_registry()
        datum: func.meta.Datum = _worker_meta.get_datum(binding, value, None)
        return datum
    try:
        encoded: func.meta.Datum = _binding_registry().get(binding).encode(value, expected_type=None)
        return encoded
    except NotImplementedError:
        raise TypeError(
            f'unable to encode outgoing TypedData: unsupported type "{binding}" for '
            f'Python type "{type(value).__name__}"'
        ) from None
