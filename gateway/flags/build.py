"""Build the storage backend and the flag runtime from ``[flags]``.

The flag state and the worker reports share one backend, so a worker has one Redis client (or
one folder) for both::

    storage = create_storage(settings.flags)            # file, Redis or memory, as configured
    runtime = create_runtime(settings.flags, storage=storage)
    reports = ReportStore(storage)                      # gateway.reports, on the same backend

Building opens nothing: the Redis client is made on first use, and closes when the runtime and
the report publisher have both stopped.
"""

from __future__ import annotations

from gateway.flags.openfeature import OpenFeatureDecider
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.loading import load_app
from gateway.settings import FlagsSettings
from gateway.storage import Storage


def create_storage(settings: FlagsSettings) -> Storage:
    """The one backend ``[flags] store`` names; reports go where the flags are, since that is
    what every worker and host already shares."""
    if settings.store == "memory":
        from gateway.storage.memory import MemoryStorage

        return MemoryStorage()
    if settings.store == "file":
        from gateway.storage.file import FileStorage

        return FileStorage(settings.file, reports=settings.file.parent / "reports")
    from gateway.storage.redis import RedisStorage

    return RedisStorage(
        settings.redis_url,
        key=settings.redis_key,
        reports_prefix=f"{settings.redis_key}:reports:",
    )


def create_runtime(
    settings: FlagsSettings, *, source: str = "<config>", storage: Storage | None = None
) -> FlagRuntime:
    """The flag runtime over ``storage`` (by default a backend of its own, as ``gateway flags``
    uses it); stopping the runtime closes its view of the storage."""
    provider = None
    if settings.openfeature_provider is not None:
        key = "flags.openfeature_provider"
        provider = OpenFeatureDecider(load_app(settings.openfeature_provider, {}, source, key))
    return FlagRuntime(
        defaults=settings.defaults,
        store=FlagStore(storage if storage is not None else create_storage(settings)),
        anonymous_key=settings.anonymous_key,
        override_roles=settings.override_roles,
        provider=provider,
    )
