"""The `documents` job: fetch -> extract -> chunk -> analyse -> embed -> manifest, resumable.

CPU-bound stages run in the worker's process pool (the event loop must keep renewing the job's
lock) and storage calls in threads. Each stage's output is stored as soon as the stage is done,
then `checkpoint.json` vouches for it: another attempt of the same job, on the same upload with
the same settings, reuses it (a worker killed while embedding does not extract again). Any other
job, a reprocess for one, starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from pydantic import ValidationError

from heavylift.ai import uses_openai
from heavylift.ai.base import BudgetExceededError
from heavylift.documents.analyze import AnalysisSummary, analyze_jsonl
from heavylift.documents.budget import DecodeBudget
from heavylift.documents.chunk import (
    ChunkOutcome,
    ChunkSummary,
    ChunkTask,
    chunk_jsonl,
    chunk_when_ready,
    signal_pages,
)
from heavylift.documents.detect import DocumentType, detect_type
from heavylift.documents.embed import EmbeddingSummary, VectorFiles, embed_jsonl
from heavylift.documents.errors import DocumentError, EmptyDocumentError, ExtractionTimeoutError
from heavylift.documents.extract import ExtractSummary, extract_to_jsonl
from heavylift.documents.job import DocumentJobData
from heavylift.documents.manifest import (
    DocumentManifest,
    DocumentResult,
    ManifestCounts,
    ManifestError,
)
from heavylift.documents.ocr import (
    OcrResult,
    OcrSummary,
    OcrTimeoutError,
    merge_into,
    ocr_page,
    summarize,
)
from heavylift.documents.store import (
    ANALYSIS,
    CHUNKS,
    PAGES,
    VECTOR_INDEX,
    VECTORS,
    Checkpoint,
    DocumentFiles,
    StageTiming,
)
from heavylift.memory import release_memory
from heavylift.queue.cancel import CANCELLED_REASON
from heavylift.runtime import metrics
from heavylift.runtime.context import JobContext, PermanentJobError
from heavylift.runtime.offload import PoolMemoryError
from heavylift.settings import Settings
from heavylift.storage import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
)

log = logging.getLogger("heavylift.documents")

T = TypeVar("T")

# Share of the progress bar per stage; the stages a job does not run give theirs to the others.
_WEIGHTS = {"fetch": 5, "extract": 50, "chunk": 10, "analysis": 20, "embeddings": 13, "store": 2,
            "ocr": 60}
# Time limit of one OCR task beyond its page's own (opening, rendering, loading language data).
_OCR_TASK_SLACK_S = 60.0
_UPLOAD = "upload.bin"
# Written when the extraction ends: may the chunk task waiting for it chunk pages.jsonl?
_PAGES_READY = "pages.ready"


class UploadMissingError(DocumentError):
    default_message = "The uploaded file is no longer in storage; upload it again."


class UploadChangedError(DocumentError):
    default_message = "The stored upload is not the file this job was queued for."


async def process_document(ctx: JobContext) -> dict[str, Any]:
    """The `process` job of the `documents` queue; returns the seed's result shape."""
    try:
        data = DocumentJobData.model_validate(ctx.data)
    except ValidationError as error:
        raise PermanentJobError(f"invalid document job data: {error}") from None
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="heavylift-doc-"))
    try:
        result = await _Run(ctx, data, ctx.settings, ctx.store, workdir).execute()
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return result.model_dump()


class _Run:
    def __init__(
        self,
        ctx: JobContext,
        data: DocumentJobData,
        settings: Settings,
        store: ObjectStore,
        workdir: Path,
    ) -> None:
        self.ctx, self.data, self.settings = ctx, data, settings
        self.files = DocumentFiles(store, data.documentId, workdir)
        self.checkpoint = Checkpoint(run="")
        self._writing: asyncio.Future[None] | None = None  # the last storage write (_write)
        self._early_chunk: asyncio.Future[ChunkOutcome | None] | None = None  # see _extract
        # The local provider's vectors, stored by the chunk task (see _embed).
        self._chunked_vectors: EmbeddingSummary | None = None
        stages = ["fetch", "extract", "chunk"]
        stages += ["analysis"] if data.options.useAI or data.options.generateSummary else []
        stages += ["embeddings"] if data.options.generateEmbeddings else []
        self.spans = _spans([*stages, "store"])

    async def execute(self) -> DocumentResult:
        try:
            upload = await self._upload_info()
            await self._open_checkpoint(upload)
            extract = await self._stage("extract", self.checkpoint.extract, self._extract, PAGES)
            await self._ocr_stage(extract)
            chunks = await self._stage("chunk", self.checkpoint.chunk, self._chunk, CHUNKS)
            if "analysis" in self.spans and chunks.chunks:
                await self._stage("analysis", self.checkpoint.analysis, self._analyze, ANALYSIS)
            if "embeddings" in self.spans and chunks.chunks:
                await self._stage(
                    "embeddings", self.checkpoint.embeddings, self._embed, VECTORS, VECTOR_INDEX
                )
            manifest = self._manifest(None)
            await self._write(self.files.write_manifest, manifest)
        except Exception as error:
            await self._fail(error)
        except asyncio.CancelledError:
            if self._early_chunk is not None:  # its process is killed, as the shards' are
                self._early_chunk.cancel()
            if self.ctx.cancelled:
                await self._cancelled()
            raise
        finally:
            await self._settle_early_chunk()
        self.ctx.set_progress(100)
        counts = manifest.counts
        return DocumentResult(
            documentId=self.data.documentId,
            chunks=counts.chunks,
            themes=counts.themes,
            quotes=counts.quotes,
            insights=counts.insights,
        )

    # --- checkpoints --------------------------------------------------------------------------

    async def _upload_info(self) -> ObjectInfo:
        try:
            info = await asyncio.to_thread(self.files.store.info, self.data.objectKey)
        except ObjectNotFoundError:
            raise UploadMissingError() from None
        stored_sha = info.metadata.get("sha256")
        if self.data.sha256 and stored_sha and stored_sha != self.data.sha256:
            raise UploadChangedError()
        return info

    async def _open_checkpoint(self, upload: ObjectInfo) -> None:
        run = _run_key(self.ctx.id, self.data, upload, self.settings)
        existing = await asyncio.to_thread(self.files.load_checkpoint)
        if existing is not None and existing.run == run:
            self.checkpoint = existing
            return
        if existing is not None:
            await asyncio.to_thread(self.files.start_fresh)
        self.checkpoint = Checkpoint(run=run)

    async def _stage(
        self, name: str, done: T | None, run: Callable[[], Awaitable[T]], *outputs: str
    ) -> T:
        """Reuse a checkpointed stage, or run it, store its outputs and checkpoint it."""
        if done is not None:
            self._log_stage(name, reused=True)
            self._progress(name, 1.0)
            return done
        self.ctx.set_stage(name)  # named by the job watchdog if the stage goes silent
        started = time.monotonic()
        result = await run()
        timing = _timing(started)
        self.checkpoint = self.checkpoint.model_copy(
            update={name: result, "timings": {**self.checkpoint.timings, name: timing}}
        )
        await self._write(self.files.commit, outputs, self.checkpoint)
        self._log_stage(name, reused=False, seconds=timing.seconds)
        self._progress(name, 1.0)
        return result

    # --- stages -------------------------------------------------------------------------------

    async def _extract(self) -> ExtractSummary:
        started = time.monotonic()
        source = self.files.local(_UPLOAD)
        await asyncio.to_thread(_trimmed, self.files.store.download_to, self.data.objectKey, source)
        kind = await asyncio.to_thread(detect_type, source)
        self.checkpoint.timings["fetch"] = _timing(started)
        self._progress("fetch", 1.0)
        # One shard of the pages per pool process: pdfium is not thread-safe, so processes are
        # the only way to use more than one core on one PDF.
        shards = self.settings.cpu_workers if kind is DocumentType.PDF else 1
        fractions = [0.0] * shards
        budget = DecodeBudget.of(self.settings)

        def tracker(index: int) -> Callable[[float], None]:
            def on_progress(fraction: float) -> None:
                fractions[index] = fraction
                self._progress("extract", sum(fractions) / shards)

            return on_progress

        runs = [
            asyncio.ensure_future(self.ctx.cpu.run(
                extract_to_jsonl,
                source,
                self.files.local(f"pages-{index}.jsonl"),
                engine=self.settings.pdf_engine,
                shard=(index, shards),
                reopen_mb=self.settings.pdf_reopen_mb,
                budget=budget,
                on_progress=tracker(index),
                timeout_s=self.settings.extract_timeout_s,
            ))
            for index in range(shards)
        ]
        # Submitted after the shards (the pool hands out tasks in order): the chunk task starts
        # in the first process they free and loads its tokenizer while the others finish.
        ready = self.files.local(_PAGES_READY)
        self._early_chunk = asyncio.ensure_future(self._chunk_task(chunk_when_ready, ready))
        final = False
        try:
            merged = await self._gather_shards(runs, budget)
            parts = [self.files.local(f"pages-{index}.jsonl") for index in range(shards)]
            await asyncio.to_thread(_concatenate, parts, self.files.local(PAGES))
            final = not (merged.needs_ocr and self.settings.ocr_enabled)  # else OCR adds text
        finally:
            signal_pages(ready, final)
        metrics.DOCUMENT_PAGES.inc(merged.page_count)
        return merged

    async def _gather_shards(
        self, runs: list[asyncio.Task[ExtractSummary]], budget: DecodeBudget
    ) -> ExtractSummary:
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        if any(isinstance(outcome, TimeoutError) for outcome in outcomes):
            raise ExtractionTimeoutError(
                "Reading the document's text took longer than the limit of "
                f"{self.settings.extract_timeout_s:g} s (EXTRACT_TIMEOUT_S)."
            )
        summaries: list[ExtractSummary] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            summaries.append(outcome)
        merged = _merge(summaries)
        budget.check_document(merged.chars)  # each shard kept to the whole budget only
        if not merged.text_pages and not merged.needs_ocr:
            raise EmptyDocumentError("The document contains no text.")
        return merged

    async def _ocr_stage(self, extract: ExtractSummary) -> None:
        """OCR the pages without a text layer (all of an image's); fail a document that has no
        text even then: it must never complete with nothing in it."""
        ocr = None
        if extract.needs_ocr and self.settings.ocr_enabled:
            if "ocr" not in self.spans:  # known only now: OCR shares what is left of the bar
                self.spans = _respan(self.spans, after="extract", inserted="ocr")
            ocr = await self._stage("ocr", self.checkpoint.ocr, self._ocr, PAGES)
        if extract.text_pages or (ocr is not None and ocr.text_pages):
            return
        if ocr is not None:
            count = len(ocr.pages)
            raise EmptyDocumentError(
                f"No text found, even after OCR of {count} page{'s' if count > 1 else ''}."
            )
        raise EmptyDocumentError(
            f"The document has no text layer ({len(extract.needs_ocr)} pages need OCR) and OCR "
            "is off (OCR_ENABLED=false)."
        )

    async def _ocr(self) -> OcrSummary:
        extract = self.checkpoint.extract
        assert extract is not None  # the extract stage ran or was reused
        source = self.files.local(_UPLOAD)
        if not source.exists():  # extraction was reused from an earlier attempt
            await asyncio.to_thread(self.files.store.download_to, self.data.objectKey, source)
        pages = await asyncio.to_thread(self.files.ensure_local, PAGES)
        numbers = extract.needs_ocr
        # One pool task per page, one queued beyond the busy processes: pages of unequal cost
        # balance themselves, and a failing page stops the rest (the task group cancels them).
        slots = asyncio.Semaphore(self.settings.cpu_workers + 1)
        done: list[OcrResult] = []
        timeout_s = self.settings.ocr_page_timeout_s

        async def recognise(number: int) -> None:
            async with slots:
                done.append(await self.ctx.cpu.run(
                    ocr_page, source, extract.document_type, number,
                    dpi=self.settings.ocr_dpi, languages=self.settings.ocr_languages,
                    tessdata=self.settings.ocr_tessdata_dir, page_timeout_s=timeout_s,
                    timeout_s=timeout_s + _OCR_TASK_SLACK_S,
                ))
            self._progress("ocr", len(done) / len(numbers))

        try:
            async with asyncio.TaskGroup() as group:
                for number in numbers:
                    group.create_task(recognise(number))
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, TimeoutError):  # stuck in native code past Tesseract's deadline
                raise OcrTimeoutError(
                    f"OCR of a page took longer than OCR_PAGE_TIMEOUT_S={timeout_s:g} s."
                ) from first
            raise first from None
        await asyncio.to_thread(merge_into, pages, [result.text for result in done])
        metrics.DOCUMENT_OCR_PAGES.inc(len(done))
        return summarize(done, self.settings.ocr_languages, self.settings.ocr_dpi)

    async def _chunk(self) -> ChunkSummary:
        early, self._early_chunk = self._early_chunk, None
        outcome = None
        if early is not None:
            # Caught in a broken pool, it does not run again in a fresh one: chunk anew.
            with contextlib.suppress(BrokenProcessPool):
                outcome = await early
        if outcome is None:
            await asyncio.to_thread(self.files.ensure_local, PAGES)
            outcome = await self._chunk_task(chunk_jsonl)
        self._chunked_vectors = outcome.embeddings
        return outcome.summary

    async def _chunk_task(self, chunk: Callable[..., T], *waits_for: Path) -> T:
        """`chunk_jsonl`, or `chunk_when_ready` and its marker, in the pool. One that waits does
        not run again in a fresh pool: there it could hold a process its own shards need."""
        task = ChunkTask(
            pages_file=self.files.local(PAGES),
            out=self.files.local(CHUNKS),
            document_id=self.data.documentId,
            max_tokens=self.settings.chunk_tokens,
            overlap=self.settings.chunk_overlap,
            encoding=self.settings.tokenizer_encoding,
            vectors=self._vector_files() if self._embeds_locally() else None,
        )
        return await self.ctx.offload(
            chunk, *waits_for, task, span=self.spans["chunk"], rerun=not waits_for
        )

    async def _settle_early_chunk(self) -> None:
        """A chunk task still waiting when the run ends (the extraction failed, or the job was
        cancelled) has been told to stop: let it end before the work folder goes."""
        early, self._early_chunk = self._early_chunk, None
        if early is not None:
            await asyncio.wait({early})
            if not early.cancelled():
                early.exception()  # retrieved: a failure here is the run's failure's echo

    async def _analyze(self) -> AnalysisSummary:
        chunks = await asyncio.to_thread(self.files.ensure_local, CHUNKS)
        return await self.ctx.offload(
            analyze_jsonl,
            chunks,
            self.files.local(ANALYSIS),
            span=self.spans["analysis"],
            settings=self.settings,
            tokens_used=0,
        )

    async def _embed(self) -> EmbeddingSummary:
        analysis = self.checkpoint.analysis
        tokens_used = analysis.tokens_used if analysis else 0  # one token budget per job
        if self._chunked_vectors is not None:  # stored by the chunk task; a local provider
            return self._chunked_vectors.model_copy(update={"tokens_used": tokens_used})
        chunks = await asyncio.to_thread(self.files.ensure_local, CHUNKS)
        return await self.ctx.offload(
            embed_jsonl,
            chunks,
            self._vector_files(),
            span=self.spans["embeddings"],
            settings=self.settings,
            tokens_used=tokens_used,
        )

    def _embeds_locally(self) -> bool:
        return "embeddings" in self.spans and not uses_openai(self.settings)

    def _vector_files(self) -> VectorFiles:
        return VectorFiles(self.files.local(VECTORS), self.files.local(VECTOR_INDEX))

    # --- results ------------------------------------------------------------------------------

    def _manifest(
        self, error: ManifestError | None, status: Literal["CANCELLED"] | None = None
    ) -> DocumentManifest:
        cp = self.checkpoint
        extract, chunk, analysis, vectors = cp.extract, cp.chunk, cp.analysis, cp.embeddings
        ocr = cp.ocr
        outputs = {PAGES: extract, CHUNKS: chunk, ANALYSIS: analysis, VECTORS: vectors,
                   VECTOR_INDEX: vectors}
        ai = vectors or analysis
        return DocumentManifest(
            documentId=self.data.documentId,
            tenant=self.data.tenant,
            jobId=self.ctx.id,
            attempt=self.ctx.attempt,
            status=status or ("FAILED" if error else "COMPLETED"),
            filename=self.data.filename,
            size=self.data.size,
            sha256=self.data.sha256,
            options=self.data.options,
            provider=ai.provider if ai else None,
            documentType=extract.document_type if extract else None,
            engine=extract.engine if extract else None,
            pageCount=extract.page_count if extract else None,
            pagesNeedingOcr=extract.needs_ocr if extract else [],
            ocr=ocr,
            embeddingDimensions=vectors.dimensions if vectors else None,
            counts=ManifestCounts(
                pages=extract.pages if extract else 0,
                textPages=(extract.text_pages if extract else 0) + (ocr.text_pages if ocr else 0),
                ocrPages=len(ocr.pages) if ocr else 0,
                characters=(extract.chars if extract else 0) + (ocr.chars if ocr else 0),
                chunks=chunk.chunks if chunk else 0,
                tokens=chunk.tokens if chunk else 0,
                themes=analysis.themes if analysis else 0,
                quotes=analysis.quotes if analysis else 0,
                insights=analysis.insights if analysis else 0,
                embeddings=vectors.vectors if vectors else 0,
                aiTokens=ai.tokens_used if ai else 0,
            ),
            files={name: self.files.key(name) for name, made in outputs.items() if made},
            timings=cp.timings,
            warnings=self._warnings(),
            error=error,
            finishedAt=_now(),
        )

    def _warnings(self) -> list[str]:
        extract, chunk, ocr = self.checkpoint.extract, self.checkpoint.chunk, self.checkpoint.ocr
        warnings = []
        if extract and extract.needs_ocr and ocr is None and not self.settings.ocr_enabled:
            warnings.append(
                f"{len(extract.needs_ocr)} of {extract.page_count} pages have no text layer "
                "(scanned?) and OCR is off (OCR_ENABLED=false): they were not analysed"
            )
        if ocr and ocr.text_pages < len(ocr.pages):
            warnings.append(f"OCR found no text on {len(ocr.pages) - ocr.text_pages} of "
                            f"{len(ocr.pages)} pages without a text layer")
        if chunk is not None and not chunk.chunks and "analysis" in self.spans:
            warnings.append("no text to analyse: analysis and embeddings were skipped")
        return warnings

    async def _fail(self, error: Exception) -> NoReturn:
        reason = _permanent_reason(error)
        attempts = int((self.ctx.job.opts or {}).get("attempts", 1))
        if reason is not None or self.ctx.attempt >= attempts:
            failure = ManifestError(type=type(error).__name__, message=reason or str(error))
            # A job that failed because storage was away must still leave its FAILED manifest
            # once storage is back: the store rides out STORAGE_RETRY_S per call, and this write,
            # the job's last word, twice that (the attempt has just spent one budget waiting).
            manifest = self._manifest(failure)
            try:
                await asyncio.to_thread(self.files.write_manifest, manifest,
                                        2 * self.settings.storage_retry_s)
            except StorageError as storage_error:
                log.warning("could not store the failed manifest", extra={
                    "event": "manifest_failed", "jobId": self.ctx.id, "reason": str(storage_error)})
        if reason is not None:
            raise PermanentJobError(reason) from error
        raise error

    async def _write(self, write: Callable[..., None], *args: Any) -> None:
        """A write of this run's outputs to storage. A cancelled await does not stop its thread:
        the write is kept, so that a cancel waits for it to end before it clears the folder."""
        self._writing = asyncio.ensure_future(asyncio.to_thread(_trimmed, write, *args))
        await asyncio.shield(self._writing)

    async def _cancelled(self) -> None:
        """Cancelled through the API: this run's stored stages go and the manifest says
        CANCELLED. Before this run opened its checkpoint the folder is another run's: kept."""
        if not self.checkpoint.run:
            return
        if self._writing is not None:  # still storing a stage: clear after it, not before
            await asyncio.wait({self._writing})
        self.checkpoint = Checkpoint(run="")
        manifest = self._manifest(ManifestError(type="JobCancelledError",
                                                message=CANCELLED_REASON), "CANCELLED")

        def clear_and_mark() -> None:
            self.files.start_fresh()
            self.files.write_manifest(manifest)

        try:
            await asyncio.to_thread(clear_and_mark)
        except StorageError as storage_error:
            log.warning("could not clear the cancelled document", extra={
                "event": "manifest_failed", "jobId": self.ctx.id, "reason": str(storage_error)})

    # --- progress and logs --------------------------------------------------------------------

    def _progress(self, stage: str, fraction: float) -> None:
        low, high = self.spans[stage]
        self.ctx.set_progress(low + (high - low) * fraction)

    def _log_stage(self, stage: str, *, reused: bool, seconds: float | None = None) -> None:
        log.info("document stage reused" if reused else "document stage done", extra={
            "event": "stage", "jobId": self.ctx.id, "documentId": self.data.documentId,
            "stage": stage, "reused": reused, "seconds": seconds, "attempt": self.ctx.attempt})


def _trimmed(transfer: Callable[..., T], *args: Any) -> T:
    """A whole-file storage transfer, then its buffers handed back: the allocator keeps what
    gs:// transfers free (~10 MB), beside the pool's next stage (on LilyPond 313 -> 299 MB, the
    worker's processes at their peak)."""
    result = transfer(*args)
    release_memory()
    return result


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _timing(started: float) -> StageTiming:
    return StageTiming(seconds=round(time.monotonic() - started, 3), finishedAt=_now())


def _spans(stages: list[str], low: float = 0.0) -> dict[str, tuple[float, float]]:
    """Each stage's share of the progress bar from `low` to 100."""
    total, width = sum(_WEIGHTS[stage] for stage in stages), 100 - low
    spans = {}
    for stage in stages:
        high = low + width * _WEIGHTS[stage] / total
        spans[stage] = (low, high)
        low = high
    return spans


def _respan(
    spans: dict[str, tuple[float, float]], after: str, inserted: str
) -> dict[str, tuple[float, float]]:
    """`inserted` placed after the stage `after`, sharing the rest of the bar with the stages
    that follow; what is already shown does not move."""
    stages = list(spans)
    done, rest = stages[: stages.index(after) + 1], stages[stages.index(after) + 1:]
    return {**{stage: spans[stage] for stage in done},
            **_spans([inserted, *rest], low=spans[after][1])}


def _run_key(job_id: str, data: DocumentJobData, upload: ObjectInfo, settings: Settings) -> str:
    """Which run stored outputs belong to: this job (a reprocess job is another run), this exact
    upload (object generation and content hash) and every setting that shapes the outputs."""
    identity = {
        "job": job_id,
        "object": [data.objectKey, upload.etag_or_generation, data.sha256],
        "options": data.options.model_dump(),
        "extract": [settings.pdf_engine],
        "ocr": [settings.ocr_enabled, settings.ocr_dpi, settings.ocr_languages],
        "chunk": [settings.chunk_tokens, settings.chunk_overlap, settings.tokenizer_encoding],
        "ai": [settings.openai_api_key is not None, settings.openai_chat_model,
               settings.openai_embedding_model],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _merge(shards: list[ExtractSummary]) -> ExtractSummary:
    first = shards[0]
    return first.model_copy(update={
        "pages": sum(shard.pages for shard in shards),
        "text_pages": sum(shard.text_pages for shard in shards),
        "chars": sum(shard.chars for shard in shards),
        "needs_ocr": [page for shard in shards for page in shard.needs_ocr],
    })


def _concatenate(parts: list[Path], target: Path) -> None:
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out)


def _permanent_reason(error: Exception) -> str | None:
    """The failedReason of an error no retry can fix, or None for one worth retrying."""
    if isinstance(error, DocumentError | BudgetExceededError):
        return str(error)
    if isinstance(error, PoolMemoryError):
        return f"The document could not be processed within its memory limit. {error}"
    return None
