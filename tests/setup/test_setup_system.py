"""scripts/setup-system.sh: what `make test` installs on a machine that lacks it.

Each case runs the real script with a PATH holding only the tools the case
keeps, so the script sees a machine without the others; SETUP_DRY_RUN stops it
before apt-get (the test must not install packages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "setup-system.sh"
#: What the script itself runs (the system python3: a pyenv shim needs pyenv on PATH).
BASICS = ("bash", "id", "env", "python3")
#: Tool on PATH -> the Debian package the script installs for it.
TOOLS = {
    "redis-server": "redis-server",
    "promtool": "prometheus",
    "chromium": "chromium",
    "npm": "npm",
    "make": "make",
    "git": "git",
}


def machine_with(tmp_path: Path, tools: tuple[str, ...]) -> dict[str, str]:
    """An environment whose PATH offers the basics and `tools` (stubs when not installed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        found = shutil.which(name, path="/usr/bin:/bin")
        assert found, f"{name} is needed to run the script"
        (bin_dir / name).symlink_to(found)
    for name in tools:
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return {"PATH": str(bin_dir), "SETUP_DRY_RUN": "1", "HOME": str(tmp_path)}


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_complete_machine_needs_nothing(tmp_path: Path) -> None:
    result = run(machine_with(tmp_path, tuple(TOOLS)))
    assert result.returncode == 0, result.stderr
    assert "present" in result.stdout and "apt-get" not in result.stdout


@pytest.mark.parametrize("missing", sorted(TOOLS))
def test_each_missing_tool_is_installed_from_its_package(tmp_path: Path, missing: str) -> None:
    kept = tuple(name for name in TOOLS if name != missing)
    result = run(machine_with(tmp_path, kept))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("setup-system: would run: apt-get update && apt-get install -y")
    assert line.split("--no-install-recommends")[1].split() == [TOOLS[missing]]


def test_a_fresh_machine_gets_everything_at_once(tmp_path: Path) -> None:
    result = run(machine_with(tmp_path, ()))
    packages = result.stdout.split("--no-install-recommends")[1].split()
    assert sorted(packages) == sorted(TOOLS.values())


def test_without_root_it_prints_the_command_and_fails(tmp_path: Path) -> None:
    env = machine_with(tmp_path, ())
    del env["SETUP_DRY_RUN"]
    command = ["bash", str(SCRIPT)]
    if os.geteuid() == 0:  # drop to nobody, with no sudo on PATH
        tmp_path.chmod(0o755)
        command = [
            shutil.which("setpriv") or "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *command,
        ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "as root, run:" in result.stderr
    assert "apt-get update && apt-get install -y --no-install-recommends" in result.stderr
