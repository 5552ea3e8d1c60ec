"""Image documents (PNG, JPEG, TIFF) through Pillow: every frame is a page for OCR."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from heavylift.documents.errors import CorruptDocumentError, DecodedSizeLimitError

if TYPE_CHECKING:
    from PIL.Image import Image


def image_page_count(path: Path) -> int:
    """The frames of an image file (a multi-page TIFF has several); raises a DocumentError for
    a file Pillow cannot read."""
    with reading_image(path) as image:
        return int(getattr(image, "n_frames", 1))


@contextlib.contextmanager
def reading_image(path: Path) -> Iterator[Image]:
    """The open image; Pillow's errors for broken or oversized files as DocumentErrors. Pillow
    refuses images over twice `Image.MAX_IMAGE_PIXELS` (~179 Mpx) when it opens them."""
    # Imported here: only processes that read images pay for Pillow.
    from PIL import Image as PilImage
    from PIL import UnidentifiedImageError

    try:
        with PilImage.open(path) as image:
            yield image
    except PilImage.DecompressionBombError as error:
        raise DecodedSizeLimitError(
            f"The image has more than {2 * (PilImage.MAX_IMAGE_PIXELS or 0)} pixels, Pillow's"
            " limit (a decompression bomb?); the document was not processed."
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise CorruptDocumentError() from error
