"""Let an OpenFeature provider decide flagged routes: flagd, Unleash, ConfigCat, LaunchDarkly...

Point ``flags.openfeature_provider`` at a factory (or instance) of an OpenFeature provider. For
each request on a flagged route the gateway asks the provider for a *string* flag of the same
name, with the verified identity as the evaluation context (``targeting_key`` is the subject,
or the client address for anonymous callers; ``roles`` and ``auth_method`` are attributes), and
expects ``"new"`` or ``"legacy"``. The gateway's own kill switch and QA override still come
first, so one command still sends everything to legacy::

    [flags]
    openfeature_provider = "myapp.flags:create_provider"

Bluntly: the OpenFeature evaluation API is synchronous and runs on the event loop. Use a provider
that evaluates in memory and syncs in the background (flagd's in-process resolver, the vendor
SDK providers that poll); one that makes a network call per evaluation would stall every
request.
"""

from __future__ import annotations

from typing import Any

import structlog
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import FeatureProvider

from gateway.context import Identity
from gateway.flags.model import Side

log = structlog.get_logger("gateway.flags")

_DOMAIN = "migration-gateway"


class OpenFeatureEvaluator:
    def __init__(self, provider: FeatureProvider) -> None:
        self.provider = provider
        api.set_provider(provider, domain=_DOMAIN)
        self._client = api.get_client(domain=_DOMAIN)
        self.description = f"openfeature:{provider.get_metadata().name}"

    def evaluate(
        self, flag: str, identity: Identity, client_address: str | None, default: Side
    ) -> tuple[Side, str]:
        """The side, and the provider's reason (``TARGETING_MATCH``, ``DEFAULT``, ``ERROR``...)."""
        attributes: dict[str, Any] = {
            "roles": sorted(identity.roles),
            "auth_method": identity.method,
            "anonymous": not identity.is_authenticated,
        }
        context = EvaluationContext(
            targeting_key=identity.subject or client_address, attributes=attributes
        )
        details = self._client.get_string_details(flag, default, context)
        value = details.value
        if value not in ("new", "legacy"):
            log.warning("flags.provider_value_invalid", flag=flag, value=str(value)[:32])
            return default, "INVALID_VALUE"
        side: Side = "new" if value == "new" else "legacy"
        return side, str(details.reason or "UNKNOWN")

    def shutdown(self) -> None:
        self.provider.shutdown()
