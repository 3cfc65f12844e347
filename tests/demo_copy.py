"""A temporary copy of the whole demo (config, legacy app, services) that commands may edit, and
the ``gateway`` command run against it in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from support import ALL_NEW, REPO, demo_config


def copy_demo(tmp_path: Path, *, flags: dict[str, Any] | None = ALL_NEW) -> Path:
    """``tmp_path/gateway.toml`` with ``legacy_flask/`` and ``new_services/`` beside it: the
    gateway imports them from the config's folder, so edits there are what it runs."""
    for package in ("legacy_flask", "new_services"):
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (tmp_path / "tests").mkdir()
    return demo_config(tmp_path, flags=flags)


def run_gateway(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``gateway ARGS --config CONFIG`` from the config's folder, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
        cwd=config.parent,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def delete_view(config: Path, module: str, decorator: str) -> None:
    """Unregister a view of the copied legacy app, as a developer deleting it would."""
    path = config.parent / "legacy_flask" / f"{module}.py"
    text = path.read_text()
    assert decorator in text, decorator
    path.write_text(text.replace(decorator + "\n", ""))


def record_while(
    config: Path,
    route: str,
    samples: int,
    use_route: Callable[[int], None],
    *,
    env: Mapping[str, str] | None = None,
    limit: float = 120,
) -> tuple[int, str]:
    """``gateway record ROUTE --samples N`` while ``use_route(number)`` is called, number 0, 1,
    2..., until the command ends (or ``limit`` seconds pass); its status and output."""
    command = ["record", route, "--samples", str(samples), "--timeout", str(limit)]
    recorder = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *command, "--config", str(config)],
        cwd=config.parent,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + limit
        number = 0
        while recorder.poll() is None and time.monotonic() < deadline:
            use_route(number)
            number += 1
        output, _ = recorder.communicate(timeout=60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    return recorder.returncode, output
