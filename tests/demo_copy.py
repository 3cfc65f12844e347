"""A temporary copy of the whole demo (config, legacy app, services) that commands may edit, and
the ``gateway`` command run against it in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
