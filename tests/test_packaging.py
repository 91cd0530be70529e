"""The wheel carries what an installed mock and suite read beside their code: the specs,
the behaviour profiles and the shipped known deviations, found without a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return next(out.glob("cumulonimbus_contract-*.whl"))


def test_the_wheel_carries_profiles_and_known_deviations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mockserver/openapi/profiles/5.3.0.yaml" in names
    assert "conformance/known_deviations/5.3.0.yaml" in names


def test_an_installed_wheel_finds_them(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import conformance.deviations as d, mockserver.profiles as p\n"
        "from mockserver.spec import load_spec\n"
        "print(d.__file__); print(p.__file__)\n"
        "print(len(d.load('5.3.0'))); print(p.load_profile('5.3.0', load_spec()).name)\n"
    )
    # The extracted wheel comes first on the path, ahead of the checkout's editable install.
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deviations_file, profiles_file, entries, profile = done.stdout.split()
    assert deviations_file.startswith(str(site)) and profiles_file.startswith(str(site))
    assert int(entries) > 0 and profile == "5.3.0"
