"""The deployment recipe in ``deploy/``: it parses, and every command, port, path and variable
it names exists in the code and agrees across the files.

No container runtime runs here, so nothing builds the image or starts compose or a cluster;
``haproxy -c`` and ``kubectl kustomize`` check their files when those tools are installed.
The probes' endpoints are checked against a real ``gateway serve`` in ``test_e2e_deploy.py``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from deploy_files import (
    DEPLOY,
    DEPLOY_CONFIG,
    K8S,
    compose,
    compose_environment,
    compose_gateways,
    directives,
    dockerfile,
    dockerfile_args,
    dockerfile_env,
    exec_form,
    haproxy,
    k8s_documents,
    k8s_environment,
    k8s_gateway_container,
    k8s_object,
    load_deploy_settings,
    metrics_port,
    readme_install_command,
)
from support import REPO

from gateway import cli
from gateway.errors import ConfigError
from gateway.settings import CONFIG_ENV, Settings

#: Variables the files set for Python, pip or the shell, not for the project's code.
PLATFORM_VARIABLES = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
#: Seconds the lifespan's shut-down gets beyond the drain (service lifespans, log flush).
SHUTDOWN_MARGIN = 5


def environments() -> dict[str, dict[str, str]]:
    """Each gateway container's environment, by where it runs."""
    image = dockerfile_env()
    found = {
        f"compose {name}": {**image, **compose_environment(service)}
        for name, service in compose_gateways().items()
    }
    found["kubernetes"] = {**image, **k8s_environment()}
    return found


@pytest.fixture(params=sorted(environments()))
def environment(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], Settings]:
    environ = environments()[request.param]
    return environ, load_deploy_settings(environ, tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "compose.yaml",
        "prometheus.yml",
        *sorted(str(path.relative_to(DEPLOY)) for path in K8S.glob("*.yaml")),
    ],
)
def test_every_yaml_file_parses(name: str) -> None:
    documents = [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]
    assert documents
    assert all(isinstance(doc, dict) for doc in documents)


def test_the_toml_haproxy_and_dockerfile_parse() -> None:
    assert tomllib.loads(DEPLOY_CONFIG.read_text())["server"]["port"] == 8000
    sections = haproxy()
    assert {"global", "defaults", "frontend public", "backend gateways"} <= set(sections)
    instructions = [keyword for keyword, _ in dockerfile()]
    assert instructions[0] == "FROM"
    assert instructions[-1] == "CMD"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_its_config() -> None:
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_and_points_the_deployment_at_the_generated_secret() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    )
    built = {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(result.stdout)
    }
    (secret,) = [name for kind, name in built if kind == "Secret"]
    assert secret.startswith("gateway-secrets-")  # kustomize's content hash: restarts on change
    pod = built["Deployment", "gateway"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": secret}}]
    assert {("Deployment", "redis"), ("Service", "redis"), ("Service", "gateway")} <= set(built)


def test_deploy_config_loads_in_every_environment(
    environment: tuple[dict[str, str], Settings],
) -> None:
    environ, settings = environment
    assert environ[CONFIG_ENV] == "/app/deploy/gateway.toml"
    assert dockerfile_args("COPY").count("deploy/gateway.toml deploy/gateway.toml") == 1
    assert settings.logging.format == "json"
    assert settings.flags.store == "redis"
    assert settings.flags.redis_url == environ["GATEWAY_FLAGS__REDIS_URL"] == "redis://redis:6379/0"
    assert settings.auth.jwt is not None
    assert settings.auth.jwt.keys[0].secret is not None
    assert settings.auth.jwt.keys[0].secret.get_secret_value() == environ["BOOKSTORE_JWT_SECRET"]
    # The probes and the HEALTHCHECK send Host: localhost / 127.0.0.1.
    assert {"localhost", "127.0.0.1"} <= set(settings.server.allowed_hosts)
    assert settings.metrics.listen is not None
    assert str(settings.metrics.listen).endswith(f":{metrics_port()}")


def test_compose_load_balancer_is_the_trusted_proxy(tmp_path: Path) -> None:
    settings = load_deploy_settings(environments()["compose gateway-1"], tmp_path)
    address = compose()["services"]["haproxy"]["networks"]["backend"]["ipv4_address"]
    assert settings.server.trusted_proxies == (address,)
    assert directives(haproxy()["frontend public"], "option") == [["forwardfor"]]


def test_a_misspelt_variable_or_a_missing_secret_stops_the_gateway(tmp_path: Path) -> None:
    environ = environments()["kubernetes"]
    with pytest.raises(ConfigError, match=r"GATEWAY_FLAGS__REDIS_ULR: flags\.redis_ulr: unknown"):
        load_deploy_settings({**environ, "GATEWAY_FLAGS__REDIS_ULR": "redis://x"}, tmp_path)
    # No inline fallback secret in the production config: without the variable, no start.
    del environ["BOOKSTORE_JWT_SECRET"]
    with pytest.raises(ConfigError, match="BOOKSTORE_JWT_SECRET is not set"):
        load_deploy_settings(environ, tmp_path)


def test_every_other_variable_is_read_by_the_code() -> None:
    code = "\n".join(
        path.read_text()
        for folder in ("gateway", "legacy_flask", "new_services")
        for path in (REPO / folder).rglob("*.py")
    )
    code += DEPLOY_CONFIG.read_text()  # secret_env names a variable the gateway reads
    names = {name for environ in environments().values() for name in environ}
    others = sorted(
        n for n in names if not n.startswith("GATEWAY_") and n not in PLATFORM_VARIABLES
    )
    assert "BOOKSTORE_DATABASE" in others  # the check runs on something
    unread = [name for name in others if f'"{name}"' not in code]
    assert not unread, f"set by deploy/ but read nowhere: {unread}"


def test_dockerfile_installs_with_the_readmes_command() -> None:
    install = readme_install_command()
    assert "pip install" in install
    assert dockerfile_args("RUN")[0] == install
    # The image's Python satisfies the project's requires-python.
    (image,) = dockerfile_args("FROM")
    version = tuple(map(int, re.fullmatch(r"python:(\d+)\.(\d+)-slim", image).groups()))  # type: ignore[union-attr]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    minimum = pyproject["project"]["requires-python"].removeprefix(">=")
    assert version >= tuple(map(int, minimum.split(".")))
    assert dockerfile_args("USER") == ["10001:10001"]  # not root, numeric for runAsNonRoot
    assert dockerfile_env()["PATH"].startswith("/app/.venv/bin:")


def commands_named() -> list[list[str]]:
    """Every ``gateway ...`` command the image, the manifests and deploy/README.md run."""
    commands = [exec_form(dockerfile_args("CMD")[0]), k8s_gateway_container()["command"]]
    readme = (DEPLOY / "README.md").read_text()
    for block in re.findall(r"```(?:sh|console)\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            found = re.search(r"\bgateway (serve|routes|check|flags|shadow|reload)\b.*", line)
            if found:
                words = shlex.split(found[0], comments=True)
                cut = next((i for i, w in enumerate(words) if w in ("&&", "|", ";")), None)
                commands.append(words[:cut])
    return commands


@pytest.mark.parametrize("command", commands_named(), ids=" ".join)
def test_every_command_is_one_the_cli_parses(command: list[str]) -> None:
    assert command[0] == "gateway"
    args = cli._parser().parse_args(command[1:])  # argparse exits on an unknown option
    if command[1] == "serve":
        assert args.handler is cli._serve
        assert args.host == "0.0.0.0"
    if command[1] in ("serve", "reload"):
        # The image's only writable folder (the config's own folder is root's): where the
        # server writes its pid and `gateway reload` reads it.
        assert args.pid_file == Path("/app/var/run/gateway.pid")
        writable = args.pid_file.parent.parent
        assert f"chown 10001:10001 {writable}" in (DEPLOY / "Dockerfile").read_text()


def test_the_cli_refuses_an_option_it_does_not_have() -> None:
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["serve", "--bind", "0.0.0.0"])


def test_ports_and_paths_agree_across_the_files(tmp_path: Path) -> None:
    port = load_deploy_settings(environments()["kubernetes"], tmp_path).server.port
    metrics = metrics_port()
    assert dockerfile_args("EXPOSE") == [f"{port} {metrics}"]
    (healthcheck,) = dockerfile_args("HEALTHCHECK")
    assert f"'http://127.0.0.1:{port}/_gateway/health'" in healthcheck

    replicas = sorted(compose_gateways())
    assert len(replicas) == 3
    backend = haproxy()["backend gateways"]
    assert directives(backend, "server") == [[name, f"{name}:{port}"] for name in replicas]
    check = directives(backend, "http-check")
    assert [
        "send",
        "meth",
        "GET",
        "uri",
        "/_gateway/ready",
        "ver",
        "HTTP/1.1",
        "hdr",
        "Host",
        "localhost",
    ] in check
    assert ["expect", "status", "200"] in check
    (public,) = directives(haproxy()["frontend public"], "bind")
    (stats,) = directives(haproxy()["frontend stats"], "bind")
    published = compose()["services"]["haproxy"]["ports"]
    assert [f"{p[0][1:]}:{p[0][1:]}" for p in (public, stats)] == published

    jobs = {
        job["job_name"]: job
        for job in yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert jobs["gateway"]["metrics_path"] == "/_gateway/metrics"
    (targets,) = [group["targets"] for group in jobs["gateway"]["static_configs"]]
    assert targets == [f"{name}:{metrics}" for name in replicas]
    assert jobs["haproxy"]["static_configs"] == [{"targets": [f"haproxy{stats[0]}"]}]

    container = k8s_gateway_container()
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": port,
        "metrics": metrics,
    }
    for probe, path in [
        ("readinessProbe", "/_gateway/ready"),
        ("livenessProbe", "/_gateway/health"),
        ("startupProbe", "/_gateway/health"),
    ]:
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http")
        assert get["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    template = k8s_object("gateway.yaml", "Deployment")["spec"]["template"]["metadata"]
    assert template["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics),
        "prometheus.io/path": "/_gateway/metrics",
    }
    service = k8s_object("gateway.yaml", "Service")["spec"]["ports"]
    assert {p["targetPort"] for p in service} == {"http", "metrics"}


def test_redis_is_where_the_gateways_look_for_it() -> None:
    assert "redis" in compose()["services"]
    (redis_port,) = k8s_object("redis.yaml", "Service")["spec"]["ports"]
    assert (k8s_object("redis.yaml", "Service")["metadata"]["name"], redis_port["port"]) == (
        "redis",
        6379,
    )
    for environ in environments().values():
        assert environ["GATEWAY_FLAGS__REDIS_URL"].startswith("redis://redis:6379/")


def test_shutdown_fits_in_the_time_the_platform_gives(
    environment: tuple[dict[str, str], Settings],
) -> None:
    _, settings = environment
    drain = settings.server.graceful_shutdown
    pod = k8s_object("gateway.yaml", "Deployment")["spec"]["template"]["spec"]
    pre_stop = k8s_gateway_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + drain + SHUTDOWN_MARGIN <= pod["terminationGracePeriodSeconds"]
    for service in compose_gateways().values():
        assert drain + SHUTDOWN_MARGIN <= int(service["stop_grace_period"].removesuffix("s"))


def test_every_manifest_names_its_kind() -> None:
    kinds = sorted(
        doc["kind"] for name in ("gateway.yaml", "redis.yaml") for doc in k8s_documents(name)
    )
    assert kinds == ["Deployment", "Deployment", "PodDisruptionBudget", "Service", "Service"]
