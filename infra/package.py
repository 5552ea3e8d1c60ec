"""Build the deploy artifacts in one command: `python infra/package.py`.

- build/function-source.zip: functions/*.py and the heavylift package at the archive root (Cloud
  Functions imports main.py from there) plus requirements.txt pinned to the versions installed in
  the running environment, i.e. the versions the tests ran against.
- build/worker-image/: the worker image context (pyproject.toml, README.md, src/, worker_service/,
  the Dockerfile, .dockerignore) plus constraints.txt pinning the worker's dependency closure.
  Build it with `docker build build/worker-image` or `gcloud builds submit build/worker-image`.

Pins come from the installed distributions (importlib.metadata), so packaging works offline.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "heavylift"
# Never shipped: caches, tests, virtualenvs, local state.
EXCLUDED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", "tests", ".venv"}
# Cloud Functions' Python runtime is Linux x86_64 CPython: evaluate markers for it, not for us.
TARGET_ENV: dict[str, str] = {
    **{k: str(v) for k, v in default_environment().items()},
    "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
    "platform_machine": "x86_64", "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
}


def _files(root: Path, base: Path) -> list[Path]:
    """Files under base worth shipping (no caches, tests, virtualenvs or bytecode)."""
    return sorted(
        path for path in base.rglob("*")
        if path.is_file() and path.suffix != ".pyc"
        and not EXCLUDED_PARTS.intersection(path.relative_to(root).parts)
    )


def project_requirements(root: Path, extras: Iterable[str]) -> list[Requirement]:
    """The project's own requirements for the given extras, read from pyproject.toml."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    wanted, pending, reqs = set(), list(extras), [Requirement(r) for r in project["dependencies"]]
    while pending:  # extras may name other extras (heavylift[functions,worker])
        extra = pending.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for line in optional.get(extra, []):
            req = Requirement(line)
            if canonicalize_name(req.name) == PROJECT:
                pending.extend(req.extras)
            else:
                reqs.append(req)
    env = {**TARGET_ENV, "extra": ""}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def pinned_closure(roots: list[Requirement]) -> list[str]:
    """`name==version` for every distribution the roots pull in, as installed here."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = list(roots)
    while pending:
        req = pending.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"package.py: {req.name} is required but not installed here; "
                     f"install the project first (pip install -e '.[dev]')")
        if not req.specifier.contains(dist.version, prereleases=True):
            sys.exit(f"package.py: installed {req.name} {dist.version} does not satisfy {req}")
        pins[dist.metadata["Name"]] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            envs = [{**TARGET_ENV, "extra": e} for e in req.extras] or [{**TARGET_ENV, "extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                pending.append(sub)
    return [f"{name}=={pins[name]}" for name in sorted(pins, key=str.lower)]


def build_function_zip(root: Path, out: Path) -> Path:
    target = out / "function-source.zip"
    requirements = pinned_closure(project_requirements(root, ["functions"]))
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in _files(root, root / "functions"):
            archive.write(path, path.relative_to(root / "functions").as_posix())
        for path in _files(root, root / "src" / PROJECT):
            archive.write(path, path.relative_to(root / "src").as_posix())
        archive.writestr("requirements.txt", "\n".join(requirements) + "\n")
    return target


def build_worker_context(root: Path, out: Path) -> Path:
    context = out / "worker-image"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        if (root / name).is_file():
            shutil.copy2(root / name, context / name)
    shutil.copy2(root / "worker_service" / "Dockerfile", context / "Dockerfile")
    for package in (root / "src" / PROJECT, root / "worker_service"):
        for path in _files(root, package):
            dest = context / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    pins = pinned_closure(project_requirements(root, ["worker"]))
    (context / "constraints.txt").write_text("\n".join(pins) + "\n")
    return context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output directory")
    parser.add_argument("--root", type=Path, default=ROOT, help="project tree to package")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not (root / "functions" / "main.py").is_file():
        sys.exit("package.py: functions/main.py (the functions' entry points) is missing")
    print(f"function source: {build_function_zip(root, out)}")
    print(f"worker image context: {build_worker_context(root, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
