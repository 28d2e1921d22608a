"""Small PDFs written byte by byte, each with the defects of real papers, for the cleaning tests.

No PDF-writing library is needed: a page is a content stream of positioned lines in Helvetica. The font's
ToUnicode map sends byte 0x80 to the 'fi' ligature (U+FB01) and 0x81 to a private-use glyph (U+E000), as TeX
fonts and some publishers' PDFs do.
"""

from __future__ import annotations

LIGATURE_FI = "\x80"  # in a line, drawn as the ligature glyph 'ﬁ'
PRIVATE_GLYPH = "\x81"  # in a line, a private-use code point

_TO_UNICODE = b"""/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CMapName /Adobe-Identity-UCS def
/CMapType 2 def
1 begincodespacerange
<00> <FF>
endcodespacerange
2 beginbfchar
<80> <FB01>
<81> <E000>
endbfchar
1 beginbfrange
<20> <7E> <0020>
endbfrange
endcmap
CMapName currentdict /CMap defineresource pop
end
end"""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _line_ops(line: str, y: float, tight_words: bool) -> str:
    if not tight_words:
        return f"1 0 0 1 72 {y:.1f} Tm ({_escape(line)}) Tj"
    # Words placed by a small TJ offset (0.12 em) instead of a space character: what typesetters that
    # justify text do, and what ran words together in pypdf's extraction.
    words = " ".join(f"({_escape(word)}) -120" for word in line.split(" "))
    return f"1 0 0 1 72 {y:.1f} Tm [{words}] TJ"


def make_pdf(pages: list[list[str]], *, tight_words: bool = False) -> bytes:
    """A PDF whose page i shows the lines of pages[i], top to bottom."""
    streams = []
    for lines in pages:
        ops = ["BT /F1 10 Tf", *(_line_ops(line, 760 - 14 * i, tight_words) for i, line in enumerate(lines)), "ET"]
        streams.append("\n".join(ops).encode("latin-1"))
    first_page = 3
    font = first_page + 2 * len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages))), len(pages)),
    ]
    for i, stream in enumerate(streams):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 %d 0 R >> >> >>"
            % (first_page + 2 * i + 1, font)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode %d 0 R >>" % (font + 1))
    objects.append(b"<< /Length %d >>\nstream\n" % len(_TO_UNICODE) + _TO_UNICODE + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
