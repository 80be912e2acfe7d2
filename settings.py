"""One settings object, read from environment variables, with defaults that work on a laptop.

Azure Functions exposes application settings (and, locally, ``local.settings.json`` ``Values``) as
environment variables, so this is the only place configuration is read. Every variable is listed in
the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from inference.catalog import (
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_WEIGHTS,
    SUPPORTED_MODELS,
    Precision,
    is_precision,
    normalise_model_name,
)


class SettingsError(ValueError):
    """A setting has a value the app cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    blob_connection_string: str
    blob_account_url: str
    blob_local_root: str
    upload_container: str
    tensor_container: str
    sql_connection_string: str
    model_weights: Mapping[str, str]
    checkpoint_cache_dir: str
    inference_precision: Precision
    inference_batch_size: int
    dynamic_batch_max_wait_ms: float
    compute_streams: int | None  # forward passes of one model at once; None: one per thread on a CPU, 1 on a GPU
    torch_num_threads: int  # intra-op threads per worker process, shared by its running forward passes
    model_prewarm: tuple[str, ...]
    max_images_per_task: int
    max_image_bytes: int
    max_image_pixels: int
    max_decode_bytes: int  # memory one image's decode, conversion and resize may hold (inference.memory_budget)
    max_concurrent_decodes: int  # images decoded at once per worker process: its decode memory is this × the above
    preprocess_threads: int  # images a worker process fetches and preprocesses at once, across its activities
    max_top_k: int
    url_allowed_hosts: frozenset[str]
    url_fetch_timeout_seconds: float
    sync_wait_max_seconds: float
    activity_retry_attempts: int
    activity_retry_interval_ms: int
    persist_retry_attempts: int  # the results database may need longer: a paused serverless one resumes in ~1 min
    persist_retry_interval_ms: int
    upload_retention_hours: float  # uploads of tasks that never persisted are deleted after this
    instance_retention_days: float  # finished instances' history is purged from the task hub after this
    task_queue_name: str  # the queue-triggered starter's queue; rejected messages go to "<name>-poison"
    queue_connection_string: str  # AzureWebJobsStorage: the queues the trigger and reply delivery use
    queue_service_uri: str  # AzureWebJobsStorage__queueServiceUri: the same, reached with the identity
    queue_client_id: str  # AzureWebJobsStorage__clientId: which managed identity (empty: the default one)
    callback_allowed_hosts: frozenset[str]
    callback_signing_secret: str  # HMAC-SHA256 key for callback bodies; empty refuses callback URLs
    delivery_retry_attempts: int
    delivery_retry_interval_ms: int
    session_accept_timeout_seconds: float
    session_max_queued: int  # tasks a session holds waiting; a starter refuses one more with a 503

    def weights_spec(self, model: str) -> str:
        return self.model_weights[model]


def _number[N: (int, float)](env: Mapping[str, str], name: str, default: N, parse: Callable[[str], N], minimum: N) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {parse.__name__}") from None
    if not value >= minimum:  # also rejects NaN
        raise SettingsError(f"{name}={raw} must be at least {minimum}")
    return value


#: How an App Service / Functions app setting names a Key Vault secret.
KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret setting; a Key Vault reference still in the value counts as unset.

    When the platform cannot resolve a reference (a missing role, a deleted secret) it hands the app the
    reference text itself. That text names the vault, which anyone can guess from the app's host name, so
    signing with it would let anyone forge signatures: the feature that needs the secret stays off instead.
    """
    value = env.get(name, "")
    return "" if value.strip().lower().startswith(KEY_VAULT_REFERENCE_PREFIX.lower()) else value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return _number(env, name, default, int, minimum)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, 0.0)


def _list(env: Mapping[str, str], name: str, default: str = "") -> tuple[str, ...]:
    raw = env.get(name, default)
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def default_torch_threads(env: Mapping[str, str]) -> int:
    """The cores shared out between worker processes, so parallel activities do not oversubscribe.

    Azure (and the local host) run ``FUNCTIONS_WORKER_PROCESS_COUNT`` Python processes; each runs its own
    forward passes, so each gets its share of the cores rather than all of them.
    """
    workers = _int(env, "FUNCTIONS_WORKER_PROCESS_COUNT", 1, minimum=1)
    return max(1, (os.cpu_count() or 1) // workers)


def task_queue_name(env: Mapping[str, str] = os.environ) -> str:
    """``TASK_QUEUE_NAME``, read apart because the queue trigger's decorator needs it at import time.

    A literal name resolved here, rather than ``%TASK_QUEUE_NAME%`` in the binding, keeps a default when
    the setting is absent (Azure refuses a binding whose ``%Setting%`` does not resolve).
    """
    return env.get("TASK_QUEUE_NAME", "").strip().lower() or "classification-requests"


def maintenance_schedule(env: Mapping[str, str] = os.environ) -> str:
    """``MAINTENANCE_SCHEDULE`` (NCRONTAB with seconds), read apart because the timer's decorator needs it at
    import time; a literal rather than ``%MAINTENANCE_SCHEDULE%`` keeps the hourly default when the setting is
    absent (Azure refuses a binding whose ``%Setting%`` does not resolve)."""
    return env.get("MAINTENANCE_SCHEDULE", "").strip() or "0 0 * * * *"


def settings_from(env: Mapping[str, str]) -> Settings:
    """Build settings from a mapping (``os.environ`` in the app, a dict in tests)."""
    precision = env.get("INFERENCE_PRECISION", "auto").strip().lower() or "auto"
    if not is_precision(precision):
        raise SettingsError(f"INFERENCE_PRECISION={precision!r} must be one of auto, fp32, bf16")
    prewarm = _list(env, "MODEL_PREWARM", ",".join(SUPPORTED_MODELS))
    try:
        prewarm = tuple(normalise_model_name(name) for name in prewarm)
    except ValueError as exc:
        raise SettingsError(f"MODEL_PREWARM: {exc}") from None
    return Settings(
        blob_connection_string=env.get("BLOB_CONNECTION_STRING", "").strip(),
        blob_account_url=env.get("BLOB_ACCOUNT_URL", "").strip(),
        blob_local_root=env.get("BLOB_LOCAL_ROOT", "").strip() or ".localdata/blobs",
        upload_container=env.get("UPLOAD_CONTAINER", "").strip() or "uploads",
        tensor_container=env.get("TENSOR_CONTAINER", "").strip() or "tensors",
        sql_connection_string=env.get("SQL_CONNECTION_STRING", "").strip() or "sqlite:///.localdata/results.db",
        model_weights={
            model: env.get(f"MODEL_WEIGHTS_{model.upper()}", "").strip() or DEFAULT_WEIGHTS[model]
            for model in SUPPORTED_MODELS
        },
        checkpoint_cache_dir=env.get("CHECKPOINT_CACHE_DIR", "").strip() or ".localdata/checkpoints",
        inference_precision=precision,
        inference_batch_size=_int(env, "INFERENCE_BATCH_SIZE", 8, minimum=1),
        dynamic_batch_max_wait_ms=_float(env, "DYNAMIC_BATCH_MAX_WAIT_MS", 5.0),
        compute_streams=_int(env, "COMPUTE_STREAMS", 0) or None,
        torch_num_threads=_int(env, "TORCH_NUM_THREADS", 0) or default_torch_threads(env),
        model_prewarm=prewarm,
        max_images_per_task=_int(env, "MAX_IMAGES_PER_TASK", 32, minimum=1),
        max_image_bytes=_int(env, "MAX_IMAGE_BYTES", 20 * 1024 * 1024, minimum=1),
        max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", 40_000_000, minimum=1),
        max_decode_bytes=_int(env, "MAX_DECODE_BYTES", DEFAULT_MAX_DECODE_BYTES, minimum=1),
        max_concurrent_decodes=_int(env, "MAX_CONCURRENT_DECODES", 2, minimum=1),
        preprocess_threads=_int(env, "PREPROCESS_THREADS", 16, minimum=1),
        max_top_k=_int(env, "MAX_TOP_K", 100, minimum=1),
        url_allowed_hosts=frozenset(h.lower() for h in _list(env, "URL_ALLOWED_HOSTS")),
        url_fetch_timeout_seconds=_float(env, "URL_FETCH_TIMEOUT_SECONDS", 10.0),
        sync_wait_max_seconds=_float(env, "SYNC_WAIT_MAX_SECONDS", 60.0),
        activity_retry_attempts=_int(env, "ACTIVITY_RETRY_ATTEMPTS", 3, minimum=1),
        activity_retry_interval_ms=_int(env, "ACTIVITY_RETRY_INTERVAL_MS", 1000, minimum=1),
        persist_retry_attempts=_int(
            env, "PERSIST_RETRY_ATTEMPTS", _int(env, "ACTIVITY_RETRY_ATTEMPTS", 3, minimum=1), minimum=1
        ),
        persist_retry_interval_ms=_int(
            env, "PERSIST_RETRY_INTERVAL_MS", _int(env, "ACTIVITY_RETRY_INTERVAL_MS", 1000, minimum=1), minimum=1
        ),
        upload_retention_hours=_float(env, "UPLOAD_RETENTION_HOURS", 24.0),
        instance_retention_days=_float(env, "INSTANCE_RETENTION_DAYS", 30.0),
        task_queue_name=task_queue_name(env),
        queue_connection_string=env.get("AzureWebJobsStorage", "").strip(),
        queue_service_uri=env.get("AzureWebJobsStorage__queueServiceUri", "").strip(),
        queue_client_id=env.get("AzureWebJobsStorage__clientId", "").strip(),
        callback_allowed_hosts=frozenset(h.lower() for h in _list(env, "CALLBACK_ALLOWED_HOSTS")),
        callback_signing_secret=_secret(env, "CALLBACK_SIGNING_SECRET"),
        delivery_retry_attempts=_int(env, "DELIVERY_RETRY_ATTEMPTS", 5, minimum=1),
        delivery_retry_interval_ms=_int(env, "DELIVERY_RETRY_INTERVAL_MS", 2000, minimum=1),
        session_accept_timeout_seconds=_float(env, "SESSION_ACCEPT_TIMEOUT_SECONDS", 10.0),
        session_max_queued=_int(env, "SESSION_MAX_QUEUED", 100, minimum=1),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; read once because app settings only change with a restart."""
    return settings_from(os.environ)
