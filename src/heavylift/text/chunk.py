"""A chunk of a document's text: the unit that analysis and embeddings work on."""

from __future__ import annotations

from bisect import bisect_right

from pydantic import BaseModel, ConfigDict


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # "c00001-<hash>": stable for the same document id, text and settings
    index: int
    text: str
    tokens: int
    first_page: int
    last_page: int
    # (page number, offset in `text` where that page's text starts); first entry is offset 0.
    page_offsets: list[tuple[int, int]]
    start_token: int  # window [start_token, end_token) in the document's token stream
    end_token: int

    def page_at(self, offset: int) -> int:
        """The page number of the character at `offset` in `text`."""
        starts = [start for _, start in self.page_offsets]
        return self.page_offsets[bisect_right(starts, offset) - 1][0]
