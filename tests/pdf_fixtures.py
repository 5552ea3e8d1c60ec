"""PDFs for tests: real manuals from a Debian package (cached outside the repo) and generated ones.

The real ones are R's manuals (`r-doc-pdf`, ~10 MB): TeX-made, hyphenated, ligatures, 41 to
2,415 pages; and LilyPond's largest three joined (`lilypond-doc-pdf`): 1,799 pages, 47 MB.
`apt-get download` needs no root for the download itself, only an apt index.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

DEBIAN_PACKAGE = "r-doc-pdf"
_CACHE = Path(os.environ.get("HEAVYLIFT_TEST_PDFS", Path.home() / ".cache" / "heavylift-test-pdfs"))
_MANUALS = "usr/share/R/doc/manual"


def real_manuals() -> Path:
    """The folder of R's PDF manuals, downloaded and unpacked once per machine."""
    return _debian_pdfs(DEBIAN_PACKAGE, _MANUALS, "R-data.pdf")


# LilyPond's three largest manuals joined: 1,799 pages, 47 MB, the product's 50 MB promise.
_LILYPOND_PACKAGE = "lilypond-doc-pdf"
_LILYPOND_MANUALS = "usr/share/doc/lilypond/html/Documentation"
_LILYPOND_JOINED = ("notation.pdf", "snippets.pdf", "learning.pdf")


def large_manual() -> Path:
    """One real ~47 MB PDF (three LilyPond manuals joined with pypdfium2), built once per
    machine from Debian's lilypond-doc-pdf."""
    target = _CACHE / "lilypond-joined.pdf"
    if target.is_file():
        return target
    import pypdfium2 as pdfium

    folder = _debian_pdfs(_LILYPOND_PACKAGE, _LILYPOND_MANUALS, _LILYPOND_JOINED[0])
    joined = pdfium.PdfDocument.new()
    for name in _LILYPOND_JOINED:
        joined.import_pages(pdfium.PdfDocument(folder / name))
    partial = target.with_suffix(".part")
    joined.save(partial)
    partial.rename(target)
    return target


def _debian_pdfs(package: str, folder: str, marker: str) -> Path:
    """The PDFs of `folder` in Debian `package`, downloaded and unpacked once per machine."""
    target = _CACHE / package
    if (target / marker).is_file():
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("real PDFs come from a Debian package: needs apt-get and dpkg-deb")
    _CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_CACHE) as scratch:
        work = Path(scratch)
        if _apt("download", package, cwd=work).returncode != 0:
            _apt("update", cwd=work)  # a fresh machine has no package index yet
            result = _apt("download", package, cwd=work)
            assert result.returncode == 0, f"apt-get download failed: {result.stderr}"
        (deb,) = work.glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
        staging = work / "pdfs"
        staging.mkdir()
        for pdf in (work / "root" / folder).glob("*.pdf"):
            if not pdf.is_symlink():
                shutil.copyfile(pdf, staging / pdf.name)
        try:
            staging.rename(target)  # atomic: a half-filled cache never looks complete
        except OSError:
            if not (target / marker).is_file():
                raise
    return target


def _apt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-q", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def text_pdf(path: Path, pages: list[list[str]]) -> Path:
    """One PDF page per entry, each line drawn as text (a real text layer)."""
    canvas = Canvas(str(path), pagesize=A4)
    for lines in pages:
        y = 800.0
        for line in lines:
            canvas.drawString(72, y, line)
            y -= 16
        canvas.showPage()
    canvas.save()
    return path


def scan_image() -> ImageReader:
    """A 'scanned' page: dark strokes that look like text, but pixels only."""
    image = Image.new("L", (600, 800), 255)
    draw = ImageDraw.Draw(image)
    for row in range(40, 760, 24):
        draw.rectangle((40, row, 560 - (row % 7) * 30, row + 10), fill=30)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return ImageReader(buffer)


def mixed_pdf(path: Path) -> Path:
    """Page 1 text, page 2 scanned (image only), page 3 blank, page 4 text."""
    canvas = Canvas(str(path), pagesize=A4)
    canvas.drawString(72, 800, "First page has a text layer.")
    canvas.showPage()
    canvas.drawImage(scan_image(), 0, 0, width=A4[0], height=A4[1])
    canvas.showPage()
    canvas.showPage()
    canvas.drawString(72, 800, "Fourth page has text again.")
    canvas.showPage()
    canvas.save()
    return path


SCAN_DPI = 200


def rendered_pages(source: Path, numbers: list[int], dpi: int = SCAN_DPI) -> list[Image.Image]:
    """Pages of a real PDF as a scanner would see them: 8-bit grey images at `dpi`."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(source)
    try:
        return [document[number - 1].render(scale=dpi / 72, grayscale=True).to_pil().copy()
                for number in numbers]
    finally:
        document.close()


def image_pdf(target: Path, images: list[Image.Image], dpi: int = SCAN_DPI) -> Path:
    """An image-only PDF (no text layer), one JPEG per page, as scanners write them."""
    images[0].save(target, "PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return target


def scanned_pdf(source: Path, numbers: list[int], target: Path, dpi: int = SCAN_DPI) -> Path:
    """Pages `numbers` of a real text PDF, rendered and wrapped as an image-only PDF."""
    return image_pdf(target, rendered_pages(source, numbers, dpi), dpi)


def scanned_mixed_pdf(source: Path, numbers: list[int], target: Path) -> Path:
    """Pages `numbers` of `source`: the odd positions (1st, 3rd...) keep their text layer, the
    even ones are scans of themselves."""
    scans = PdfReader(scanned_pdf(source, numbers[1::2], target.with_suffix(".scans.pdf")))
    original = PdfReader(source)
    writer = PdfWriter()
    for position, number in enumerate(numbers):
        if position % 2:
            writer.add_page(scans.pages[position // 2])
        else:
            writer.add_page(original.pages[number - 1])
    writer.write(target)
    return target


def scanned_image(source: Path, numbers: list[int], target: Path, dpi: int = SCAN_DPI) -> Path:
    """Pages of a real PDF as one image file, its format from the suffix (.png for one page;
    .tiff holds every page as a frame)."""
    images = rendered_pages(source, numbers, dpi)
    packed = {"compression": "tiff_lzw"} if target.suffix in (".tif", ".tiff") else {}
    images[0].save(target, save_all=len(images) > 1, append_images=images[1:], dpi=(dpi, dpi),
                   **packed)
    return target


def blank_scanned_pdf(target: Path, pages: int = 2, dpi: int = SCAN_DPI) -> Path:
    """White A4 scans: images on every page, nothing to read in them."""
    size = (round(A4[0] * dpi / 72), round(A4[1] * dpi / 72))
    return image_pdf(target, [Image.new("L", size, 255) for _ in range(pages)], dpi)


def encrypted_copy(source: Path, target: Path, user_password: str, algorithm: str) -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    writer.write(target)
    return target


GIB = 1 << 30
_SEGMENT = 1 << 20


def repeated_deflated(size: int, fill: bytes = b"\0") -> bytes:
    """A zlib stream that inflates to `size` copies of the byte `fill`, built in milliseconds
    without compressing them: a fully flushed deflate segment (it references nothing before it)
    of 1 MiB of `fill`, repeated, with the Adler-32 of the whole computed by formula."""
    count, rest = divmod(size, _SEGMENT)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = raw.compress(fill * _SEGMENT) + raw.flush(zlib.Z_FULL_FLUSH)
    tail = raw.compress(fill * rest) + raw.flush()
    byte = fill[0]
    low = (1 + size * byte) % 65521
    high = (size + byte * (size * (size + 1) // 2)) % 65521
    return b"\x78\xda" + segment * count + tail + struct.pack(">I", high << 16 | low)


BombKind = Literal["content", "image"]


def bomb_pdf(path: Path, decoded: int = 4 * GIB, kind: BombKind = "content") -> Path:
    """A few-KB one-page PDF whose single stream inflates to `decoded` bytes: FlateDecode twice
    (the only way to a ratio beyond zlib's ~1,000:1). "content": the page's content stream (NUL
    bytes, which PDF reads as whitespace); "image": an 8-bit grey image XObject the page draws,
    of `decoded` pixels."""
    body = zlib.compress(repeated_deflated(decoded), 9)
    if kind == "content":
        stream_dict = b"<< /Length %d /Filter [/FlateDecode /FlateDecode] >>" % len(body)
        content, resources = b"", b"<< >>"
    else:
        width = 1 << 16
        stream_dict = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d"
                       b" /ColorSpace /DeviceGray /BitsPerComponent 8 /Length %d"
                       b" /Filter [/FlateDecode /FlateDecode] >>"
                       % (width, decoded // width, len(body)))
        content, resources = b"q 612 0 0 792 0 0 cm /Im1 Do Q", b"<< /XObject << /Im1 5 0 R >> >>"
    stream = stream_dict + b"\nstream\n" + body + b"\nendstream"
    page_contents = stream if kind == "content" else (
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources " + resources + b" >>",
        page_contents,
        *([stream] if kind == "image" else []),
    ]
    path.write_bytes(_pdf_file(objects))
    return path


def _pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of `objects` (numbered from 1) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)
