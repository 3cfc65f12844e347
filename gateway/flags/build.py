"""Build the flag store and runtime from ``[flags]``.

::

    runtime = create_runtime(settings.flags)
"""

from __future__ import annotations

from gateway.flags.openfeature import OpenFeatureEvaluator
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.flags.stores.memory import MemoryFlagStore
from gateway.loading import load_app
from gateway.settings import FlagsSettings


def create_store(settings: FlagsSettings) -> FlagStore:
    if settings.store == "memory":
        return MemoryFlagStore()
    if settings.store == "file":
        from gateway.flags.stores.file import FileFlagStore

        return FileFlagStore(settings.file)
    from gateway.flags.stores.redis import RedisFlagStore

    return RedisFlagStore(settings.redis_url, key=settings.redis_key)


def create_runtime(settings: FlagsSettings, *, source: str = "<config>") -> FlagRuntime:
    provider = None
    if settings.openfeature_provider is not None:
        key = "flags.openfeature_provider"
        provider = OpenFeatureEvaluator(load_app(settings.openfeature_provider, {}, source, key))
    return FlagRuntime(
        defaults=settings.defaults,
        store=create_store(settings),
        anonymous_key=settings.anonymous_key,
        override_roles=settings.override_roles,
        provider=provider,
    )
