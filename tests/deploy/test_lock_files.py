"""The image's lock files (requirements/*.lock, used by the Dockerfile with --require-hashes) agree with
pyproject.toml: every dependency it declares is pinned, to a version its range allows, with hashes; the sandbox's
lock is the runtime lock plus the sandbox extra, at the same versions; and pip accepts each lock as it stands.
After changing a dependency: `make lock`."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of every `name==version` entry of a pip-compile --generate-hashes file."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        text = line.strip().rstrip("\\").strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
            continue
        requirement = Requirement(text)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{lock.name}: {text} is not pinned"
        current = canonicalize_name(requirement.name)
        found[current] = (specifier.version, 0)
    return found


def declared(*extras: str) -> list[Requirement]:
    return [Requirement(text) for text in PROJECT["project"]["dependencies"]] + [
        Requirement(text) for extra in extras for text in PROJECT["project"]["optional-dependencies"][extra]]


@pytest.mark.parametrize(("lock", "requirements"), [
    ("runtime.lock", declared()),
    ("sandbox.lock", declared("sandbox")),
    ("build.lock", [Requirement(text) for text in PROJECT["build-system"]["requires"]]),
])
def test_every_declared_dependency_is_pinned_within_its_range_with_hashes(lock, requirements):
    pinned = pins(LOCKS / lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {requirement}: run `make lock`"
        version, hashes = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{lock} pins {name}=={version}, " \
            f"outside pyproject.toml's {requirement}: run `make lock`"
        assert hashes, f"{lock}: {name} has no hash"
    assert all(hashes for _, hashes in pinned.values()), lock


def test_the_sandbox_image_runs_the_runtime_lock_at_the_same_versions():
    runtime, sandbox = pins(LOCKS / "runtime.lock"), pins(LOCKS / "sandbox.lock")
    assert {name: version for name, (version, _) in sandbox.items() if name in runtime} == {
        name: version for name, (version, _) in runtime.items()}


def test_the_images_install_nothing_a_lock_does_not_pin():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r /tmp/requirements/${LOCK}.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile


@pytest.mark.parametrize("lock", ["runtime.lock", "sandbox.lock", "build.lock"])
def test_pip_accepts_the_lock_with_its_hashes(lock):
    # A dry run downloads (or finds in pip's cache) every file and checks it against the lock's hashes.
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--require-hashes",
                           "--no-deps", "--ignore-installed", "-r", str(LOCKS / lock)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
