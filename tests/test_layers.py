"""Dependencies point one way: entry points -> pipelines -> building blocks. Each check imports
a module in a fresh interpreter and lists which of our modules came with it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from local.launch import child_env

_LIST_IMPORTED = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("heavylift", "worker_service")))))
"""


def imported_with(*modules: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _LIST_IMPORTED, *modules], env=child_env(),
                         capture_output=True, text=True, check=True, timeout=60).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def under(loaded: list[str], *packages: str) -> list[str]:
    return [m for m in loaded if m in packages or m.startswith(tuple(p + "." for p in packages))]


def test_the_api_imports_no_worker_code() -> None:
    # Every route module, the dataset service (inline syncs) included.
    loaded = imported_with("heavylift.api", "heavylift.datasets.service")
    assert under(loaded, "heavylift.runtime", "worker_service") == []
    assert under(loaded, "heavylift.documents.pipeline", "heavylift.datasets.pipeline") == []


@pytest.mark.parametrize(("module", "forbidden"), [
    ("heavylift.queue", ("heavylift.documents", "heavylift.datasets", "heavylift.api")),
    ("heavylift.text", ("heavylift.documents", "heavylift.ai")),
    ("heavylift.ai.openai_provider", ("heavylift.documents",)),
    ("heavylift.ai.local", ("heavylift.documents",)),
    ("heavylift.storage", ("heavylift.documents", "heavylift.datasets", "heavylift.queue")),
    ("heavylift.runtime.health", ("heavylift.runtime.runner",)),
])
def test_building_blocks_do_not_import_what_is_built_on_them(
    module: str, forbidden: tuple[str, ...]
) -> None:
    assert under(imported_with(module), *forbidden) == []


def test_job_contracts_name_their_processors_without_importing_them() -> None:
    loaded = imported_with("heavylift.documents.job", "heavylift.datasets.job")
    assert under(loaded, "heavylift.runtime", "heavylift.documents.pipeline",
                 "heavylift.datasets.pipeline", "heavylift.datasets.engine") == []


def test_the_worker_registry_covers_every_job_kind() -> None:
    from heavylift import diagnostics
    from heavylift.datasets import job as dataset_job
    from heavylift.documents import job as document_job
    from worker_service.main import REGISTRY

    for kind in [document_job.KIND, dataset_job.KIND, *diagnostics.KINDS]:
        assert kind.name in REGISTRY[kind.queue], kind
        module, _, function = kind.processor.partition(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), kind


def test_the_worker_console_script_imports_none_of_our_code_until_it_runs() -> None:
    # The process pool's spawned children re-run the console script's imports (their
    # `__mp_main__`): whatever its module imports sits in every pool process (the queue engine,
    # Redis, telemetry: 80 MB at rest instead of ~40).
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="heavylift-worker")
    assert script.module == "worker_service"
    loaded = imported_with(script.module)
    assert loaded == ["worker_service"]
    assert callable(script.load())


def test_the_worker_process_leaves_what_the_stages_need_to_its_pool() -> None:
    """The worker's own process submits the document stages but never runs them: it must not
    carry numpy, pdfium, the tokenizer or Tesseract (~17 MB beside each pool process's own)."""
    script = ("import json, sys, worker_service.main, heavylift.documents.pipeline; "
              "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                         text=True, check=True, timeout=60).stdout
    packages = {name.split(".")[0] for name in json.loads(out)}
    assert packages & {"numpy", "pypdfium2", "gigatoken", "PIL", "tesserocr", "pypdf"} == set()


def test_the_document_stages_pool_code_leaves_the_settings_to_the_worker() -> None:
    """A pool process that extracts, OCRs and chunks is handed plain values, never Settings: it
    must not import pydantic-settings and our settings (~6 MB in each pool process)."""
    script = ("import json, sys, heavylift.runtime.pool_child, heavylift.documents.extract, "
              "heavylift.documents.ocr, heavylift.documents.chunk, heavylift.documents.chunker; "
              "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                         text=True, check=True, timeout=60).stdout
    modules = set(json.loads(out))
    assert "heavylift.documents.chunker" in modules  # the script imported what it names
    assert {"pydantic_settings", "heavylift.settings"} & modules == set()
