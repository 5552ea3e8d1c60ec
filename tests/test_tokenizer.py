"""Our tokenizer (gigatoken on the shipped BPE files) gives tiktoken's ids, and its memory stays
bounded on text made to be unique."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from heavylift.documents.extract import extract_pages
from heavylift.text.encoding import TokenizerEncoding
from heavylift.text.tokenizer import load_tokenizer
from tests.pdf_fixtures import real_manuals
from tests.tiktoken_reference import reference

ENCODINGS: list[TokenizerEncoding] = ["cl100k_base", "o200k_base"]
# What pre-tokenizers and BPE trip on: contractions, whitespace runs of every kind, digits,
# scripts without spaces, combining marks, emoji with modifiers, special-token text.
_PIECES = [*"abcXYZ019 '\t\n\r\x0b\x0c.,;:!?-_()[]{}<>|/\\\"", "'s", "'T", "'re", "'LL", "  ",
           "\n\n", "\u00a0", "\u2003", "\u3000", "é", "ß", "Ω", "ж", "中文", "日本", "한",
           "🙂", "👍🏽", "\u0301", "ع", "ש", "१", "٣", "①", "Ⅻ", "ﬁ", "\ufeff", "\u200b", "\u2028",
           "<|endoftext|>", "<|fim_prefix|>", "\x00", "\x7f", "ǅ", "ᾈ"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_real_pages_encode_to_tiktokens_ids(encoding: TokenizerEncoding) -> None:
    ours, theirs = load_tokenizer(encoding), reference(encoding)
    pages = [page.text for name in ("R-intro.pdf", "R-lang.pdf", "R-FAQ.pdf")
             for page in extract_pages(real_manuals() / name).pages]
    assert sum(map(len, pages)) > 500_000
    for text in pages:
        assert ours.encode(text).tolist() == theirs.encode_ordinary(text)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fuzzed_text_encodes_and_decodes_as_tiktoken_does(encoding: TokenizerEncoding) -> None:
    ours, theirs = load_tokenizer(encoding), reference(encoding)
    rng = random.Random(14)
    for _ in range(20_000):
        text = "".join(rng.choices(_PIECES, k=rng.randint(1, 40)))
        tokens = ours.encode(text)
        assert tokens.dtype == np.int32 and tokens.tolist() == theirs.encode_ordinary(text), text
        assert ours.decode(tokens) == text
        cut = tokens[: rng.randint(0, len(tokens))]  # may end inside a character: U+FFFD
        assert ours.decode(cut) == theirs.decode(cut.tolist())


def test_special_token_text_is_plain_text() -> None:
    ours = load_tokenizer("cl100k_base")
    assert ours.encode("hello <|endoftext|> world").tolist() == [
        15339, 83739, 8862, 728, 428, 91, 29, 1917]


def test_a_reload_keeps_the_ids_and_bounds_the_memory_of_unique_text(tmp_path: Path) -> None:
    """gigatoken caches every distinct piece it encodes: ~110 bytes each, without a bound.
    24M characters of unique words grow a process by ~200 MB; reloading every 4M characters
    keeps it near one interval's worth."""
    script = textwrap.dedent(
        """
        import random, string, sys
        from heavylift.text.tokenizer import (
            Tokenizer, install_shipped_encoding, tiktoken_cache_dir)
        from tests.tiktoken_reference import reference

        def rss_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

        rank_file = install_shipped_encoding("cl100k_base", tiktoken_cache_dir())
        ours = Tokenizer("cl100k_base", rank_file, reload_after_chars=4_000_000)
        theirs = reference("cl100k_base")
        ours.encode("warm")
        loaded, rng = rss_mb(), random.Random(0)
        for _ in range(6):
            text = " ".join("".join(rng.choices(string.ascii_lowercase, k=9))
                            for _ in range(400_000))
            assert ours.encode(text[:20_000]).tolist() == theirs.encode_ordinary(text[:20_000])
            ours.encode(text)
        print(round(rss_mb() - loaded))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 130  # 198 MB without the reload, 94 with it
