"""A provider that needs no network: extractive, keyword-based and deterministic."""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from heavylift.ai.base import (
    AIProvider,
    Analysis,
    AnalysisLimits,
    Insight,
    ProviderInfo,
    Quote,
    Summary,
    Theme,
    TokenUsage,
    Vectors,
)
from heavylift.text import Chunk
from heavylift.text.encoding import TokenizerEncoding
from heavylift.text.tokenizer import TokenArray, Tokenizer, load_tokenizer, token_bytes, token_table

EMBEDDING_DIMENSIONS = 384
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_EMBED_TOKEN = re.compile(r"\w", re.UNICODE)
# Sentences end at . ! ? before whitespace, or at a blank line; linear scan, no backtracking.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n[ \t]*\n")
_SENTENCE_START = re.compile(r"[\"'(\[]?[A-Z0-9]")
_QUOTE_CHARS = (60, 320)
# Figures worth an insight: percentages, amounts of money, years.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?\s?%|[$€£]\s?\d|\b(?:19|20)\d{2}\b")
_STOPWORD_TEXT = """
    about above after again against all also and any are because been before being below between
    both but can cannot could did does doing down during each few for from further had has have
    having her here hers herself him himself his how however into its itself just may might more
    most must not now off once only other our ours out over own same shall she should some such
    than that the their theirs them themselves then there these they this those through too under
    until upon very was were what when where which while who whom why will with within without
    would you your yours yourself see use used using one two three first second new also thus
    example following given well like get set value values case cases way ways http https
    www org com html
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class _Sentence:
    chunk: Chunk
    start: int
    end: int
    score: float

    @property
    def text(self) -> str:
        return self.chunk.text[self.start : self.end]


class LocalProvider(AIProvider):
    info = ProviderInfo(name="local", chat_model="extractive", embedding_model="hashing-384")

    def analyze(self, chunks: Sequence[Chunk], limits: AnalysisLimits | None = None) -> Analysis:
        limits = limits or AnalysisLimits()
        weights = _term_weights(chunks)
        sentences = _scored_sentences(chunks, weights)
        return Analysis(
            provider=self.info,
            summary=_summary(sentences, limits.summary_sentences),
            themes=_themes(chunks, weights, limits.themes),
            quotes=_quotes(sentences, limits.quotes),
            insights=_insights(chunks, weights, sentences, limits.insights),
            usage=TokenUsage(),
        )

    def __init__(self, encoding: TokenizerEncoding = "cl100k_base") -> None:
        self.encoding = encoding
        self._tokenizer: Tokenizer | None = None  # loaded by the first `embed`

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.encoding)
        return self.embed_tokens([self._tokenizer.encode(text) for text in texts])

    def embed_tokens(self, texts: Sequence[TokenArray]) -> Vectors:
        """`embed` of texts already encoded (the chunk stage's ids): the same vectors."""
        return hashing_embeddings(texts, self.encoding)


def hashing_embeddings(
    texts: Sequence[TokenArray], encoding: TokenizerEncoding, dimensions: int = EMBEDDING_DIMENSIONS
) -> Vectors:
    """Signed feature hashing of the texts' tokens, lower-cased and without their leading space
    (" Apple" and "apple" are one feature; punctuation and whitespace are none), L2-normalised.
    Vectorised over the batch: a table lookup per token, one bincount."""
    buckets, signs = _token_features(encoding, dimensions)
    lengths = [len(tokens) for tokens in texts]
    ids = np.concatenate(texts) if texts else np.zeros(0, dtype=np.int32)
    rows = np.repeat(np.arange(len(texts)), lengths)
    counts = np.bincount(rows * dimensions + buckets[ids], weights=signs[ids],
                         minlength=len(texts) * dimensions)
    vectors = counts.reshape(len(texts), dimensions).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


@lru_cache(maxsize=2)
def _token_features(
    encoding: TokenizerEncoding, dimensions: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Per token id: its bucket and sign (0: no feature), from crc32 (stable across runs) of
    its lower-cased text; a piece of a character (a CJK character is often two tokens) counts
    by its bytes."""

    def build() -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]:
        vocabulary = token_bytes(encoding)
        buckets = np.zeros(len(vocabulary), dtype=np.int64)
        signs = np.zeros(len(vocabulary), dtype=np.float64)
        for token, data in enumerate(vocabulary):
            try:
                word = data.decode().strip().lower()
            except UnicodeDecodeError:
                key = data
            else:
                if not _EMBED_TOKEN.search(word):
                    continue
                key = word.encode()
            hashed = zlib.crc32(key)
            buckets[token] = hashed % dimensions
            signs[token] = 1.0 if hashed & (1 << 31) else -1.0
        return {"buckets": buckets, "signs": signs}

    table = token_table(f"hashing-features-v1-{encoding}-{dimensions}", build)
    return table["buckets"], table["signs"]


def _terms(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS]


def _term_weights(chunks: Sequence[Chunk]) -> dict[str, float]:
    """TF-IDF over chunks: frequent terms score highest, those in every chunk less so."""
    frequencies = Counter[str]()
    document_frequency = Counter[str]()
    for chunk in chunks:
        counts = Counter(_terms(chunk.text))
        frequencies.update(counts)
        document_frequency.update(counts.keys())
    total = len(chunks)
    return {
        term: count * math.log(1.0 + total / document_frequency[term])
        for term, count in frequencies.items()
    }


def _scored_sentences(chunks: Sequence[Chunk], weights: dict[str, float]) -> list[_Sentence]:
    """Map step: each chunk's sentences scored by the mean weight of their terms."""
    sentences = []
    for chunk in chunks:
        for start, end in _sentence_spans(chunk.text):
            terms = _terms(chunk.text[start:end])
            if len(terms) >= 4:
                score = sum(weights.get(term, 0.0) for term in terms) / len(terms)
                sentences.append(_Sentence(chunk, start, end, score))
    return sentences


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end() if match.group()[0] in ".!?" else match.start()
        piece = text[start:end]
        begin = start + len(piece) - len(piece.lstrip())
        if _SENTENCE_START.match(text, begin):
            spans.append((begin, end))
        start = match.end()
    return spans


def _best(sentences: list[_Sentence], limit: int, minimum: int, maximum: int) -> list[_Sentence]:
    """Reduce step: the top sentences of the right length, one per distinct text."""
    chosen: list[_Sentence] = []
    seen: set[str] = set()
    for sentence in sorted(sentences, key=lambda s: (-s.score, s.chunk.index, s.start)):
        text = " ".join(sentence.text.split())
        if minimum <= len(text) <= maximum and text not in seen:
            seen.add(text)
            chosen.append(sentence)
            if len(chosen) >= limit:
                break
    return chosen[:limit]


def _summary(sentences: list[_Sentence], limit: int) -> Summary:
    top = _best(sentences, limit, 40, 400)
    top.sort(key=lambda s: (s.chunk.index, s.start))  # document order reads better
    return Summary(text=" ".join(" ".join(s.text.split()) for s in top))


def _quotes(sentences: list[_Sentence], limit: int) -> list[Quote]:
    # Sentences are spans of the chunk text, so they are verbatim by construction.
    return [
        Quote(text=s.text, page=s.chunk.page_at(s.start), chunk_id=s.chunk.id)
        for s in _best(sentences, limit, *_QUOTE_CHARS)
    ]


def _themes(chunks: Sequence[Chunk], weights: dict[str, float], limit: int) -> list[Theme]:
    themes = []
    for term in sorted(weights, key=lambda t: (-weights[t], t))[:limit]:
        supporting = _supporting(chunks, term)
        if not supporting:
            continue
        pages = [chunk.first_page for chunk in supporting] + [c.last_page for c in supporting]
        themes.append(
            Theme(
                name=term.capitalize(),
                description=(
                    f"'{term}' is a recurring topic, discussed in {len(supporting)} "
                    f"of {len(chunks)} sections (pages {min(pages)}-{max(pages)})."
                ),
                chunk_ids=[chunk.id for chunk in supporting[:10]],
            )
        )
    return themes


def _supporting(chunks: Sequence[Chunk], term: str) -> list[Chunk]:
    pattern = re.compile(rf"\b{re.escape(term)}\b", re.IGNORECASE)
    counted = [(len(pattern.findall(chunk.text)), chunk) for chunk in chunks]
    return [chunk for count, chunk in sorted(counted, key=lambda c: (-c[0], c[1].index)) if count]


def _insights(
    chunks: Sequence[Chunk],
    weights: dict[str, float],
    sentences: list[_Sentence],
    limit: int,
) -> list[Insight]:
    """Heuristics: where the top topics concentrate, and sentences that state figures."""
    insights = []
    for term in sorted(weights, key=lambda t: (-weights[t], t))[: limit // 2]:
        supporting = _supporting(chunks, term)
        if not supporting:
            continue
        share = len(supporting) / len(chunks)
        insights.append(
            Insight(
                title=f"Focus on {term}",
                detail=(
                    f"'{term}' appears in {share:.0%} of the sections; it is densest on page "
                    f"{supporting[0].first_page} and last discussed on page "
                    f"{max(chunk.last_page for chunk in supporting)}."
                ),
                chunk_ids=[chunk.id for chunk in supporting[:5]],
            )
        )
    figures = [s for s in sentences if _NUMBER.search(s.text)]
    for sentence in _best(figures, limit - len(insights), 40, 400):
        insights.append(
            Insight(
                title=f"Key figure (page {sentence.chunk.page_at(sentence.start)})",
                detail=" ".join(sentence.text.split()),
                chunk_ids=[sentence.chunk.id],
            )
        )
    return insights
