"""Readers for the deployment recipe in ``deploy/``, for ``tests/test_deploy.py``.

No container runtime runs these files here, so the tests read them as the tools would: the
Dockerfile's instructions, HAProxy's sections, the YAML documents, and the environment each
gateway container gets (compose's ``${NAME:-default}`` resolved to its default; the Kubernetes
Secret from the kustomization's literals).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from support import REPO

from gateway.settings import Settings, load_settings

DEPLOY = REPO / "deploy"
DEPLOY_CONFIG = DEPLOY / "gateway.toml"
K8S = DEPLOY / "k8s"

_COMPOSE_DEFAULT = re.compile(r"\$\{(?P<name>\w+):-(?P<default>[^}]*)\}")


def metrics_port() -> int:
    """The port of ``[metrics] listen``, read from the file itself."""
    listen = tomllib.loads(DEPLOY_CONFIG.read_text())["metrics"]["listen"]
    return int(listen.rsplit(":", 1)[1])


def load_deploy_settings(
    environ: Mapping[str, str], tmp_path: Path, text: str | None = None
) -> Settings:
    """``deploy/gateway.toml`` (or ``text``) through the project's own ``load_settings``."""
    text = DEPLOY_CONFIG.read_text() if text is None else text
    path = tmp_path / "deploy-gateway.toml"
    path.write_text(text)
    return load_settings(path, environ)


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [arguments for found, arguments in dockerfile() if found == keyword]


def exec_form(arguments: str) -> list[str]:
    """A ``CMD ["a", "b"]`` (exec form, JSON) as a list."""
    value = json.loads(arguments)
    assert isinstance(value, list), arguments
    return [str(part) for part in value]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for arguments in dockerfile_args("ENV"):
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def haproxy() -> dict[str, list[list[str]]]:
    """Each section (``"backend gateways"``) with its directives, split into words."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            assert current is not None, f"directive outside a section: {raw!r}"
            current.append(line.split())
    return sections


def directives(section: list[list[str]], name: str) -> list[list[str]]:
    return [words[1:] for words in section if words[0] == name]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def compose_gateways() -> dict[str, dict[str, Any]]:
    """The compose services built from ``deploy/Dockerfile``: the gateway replicas."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as compose gives it when nothing is set in the shell."""
    return {
        name: _COMPOSE_DEFAULT.sub(lambda m: m["default"], str(value))
        for name, value in service.get("environment", {}).items()
    }


def k8s_documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def k8s_object(file: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in k8s_documents(file) if doc["kind"] == kind]
    return found


def k8s_gateway_container() -> dict[str, Any]:
    pod = k8s_object("gateway.yaml", "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def k8s_secret_literals() -> dict[str, str]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    literals = {}
    for generator in kustomization.get("secretGenerator", []):
        for literal in generator.get("literals", []):
            name, _, value = literal.partition("=")
            literals[name] = value
    return literals


def k8s_environment() -> dict[str, str]:
    """The gateway container's environment: its ``env`` and the generated Secret's values."""
    container = k8s_gateway_container()
    env = {item["name"]: str(item["value"]) for item in container.get("env", [])}
    secret_refs = [source["secretRef"]["name"] for source in container.get("envFrom", [])]
    assert secret_refs == ["gateway-secrets"], secret_refs
    return {**k8s_secret_literals(), **env}


def readme_install_command() -> str:
    """The README's install command: its first command, up to ``&& gateway serve``."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Two commands") :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    command = block.splitlines()[0]
    install, separator, _ = command.partition(" && gateway serve")
    assert separator, command
    return install
