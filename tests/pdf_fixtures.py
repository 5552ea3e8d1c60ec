"""PDFs for tests: real manuals from a Debian package (cached outside the repo) and generated ones.

The real ones are R's manuals (`r-doc-pdf`, ~10 MB): TeX-made, hyphenated, ligatures, 41 to
2,415 pages. `apt-get download` needs no root for the download itself, only an apt index.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

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
    target = _CACHE / DEBIAN_PACKAGE
    if (target / "R-data.pdf").is_file():
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("real PDFs come from a Debian package: needs apt-get and dpkg-deb")
    _CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_CACHE) as scratch:
        work = Path(scratch)
        if _apt("download", DEBIAN_PACKAGE, cwd=work).returncode != 0:
            _apt("update", cwd=work)  # a fresh machine has no package index yet
            result = _apt("download", DEBIAN_PACKAGE, cwd=work)
            assert result.returncode == 0, f"apt-get download failed: {result.stderr}"
        (deb,) = work.glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
        staging = work / "manuals"
        staging.mkdir()
        for pdf in (work / "root" / _MANUALS).glob("*.pdf"):
            if not pdf.is_symlink():
                shutil.copyfile(pdf, staging / pdf.name)
        try:
            staging.rename(target)  # atomic: a half-filled cache never looks complete
        except OSError:
            if not (target / "R-data.pdf").is_file():
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


def encrypted_copy(source: Path, target: Path, user_password: str, algorithm: str) -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    writer.write(target)
    return target
