"""The sdist and the wheel carry everything a site needs (issue: packaging)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import cells_oidc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def package_files(root: Path) -> set[str]:
    """The files under cells_oidc/ that a site needs at run time (not caches)."""
    return {
        str(path.relative_to(root))
        for path in (root / "cells_oidc").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".po~"}
    }


def test_the_wheel_holds_templates_static_fixtures_migrations_locales_and_the_license(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    assert wheel.name == f"cells_oidc-{cells_oidc.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = package_files(ROOT)
    assert any(name.startswith("cells_oidc/templates/cells_oidc/") for name in expected)
    assert any(name.startswith("cells_oidc/static/cells_oidc/") for name in expected)
    assert "cells_oidc/fixtures/default_clients.json" in expected
    assert "cells_oidc/py.typed" in expected
    missing = sorted(expected - names)
    assert not missing, missing
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = next(
        zipfile.ZipFile(wheel).read(name).decode() for name in names if name.endswith(".dist-info/METADATA")
    )
    assert "License-Expression: MIT" in metadata
    assert f"Version: {cells_oidc.__version__}" in metadata


def test_the_sdist_holds_the_package_data_and_the_license(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert "LICENSE" in names
    missing = sorted(name for name in package_files(ROOT) if name not in names)
    assert not missing, missing
