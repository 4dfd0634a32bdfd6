"""A disclosure's receipt for people: every item with its hash, size and duration, as HTML and PDF."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from evidence_agent.errors import ConfigError

# Debian's fonts-dejavu-core and fonts-droid-fallback (scripts/setup.sh installs them): Unicode
# beyond Latin-1, which the PDF's built-in fonts lack, and Chinese (names, reasons and case
# numbers are typed by people).
_FONTS = Path("/usr/share/fonts/truetype/dejavu")
_CJK = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
_SANS, _BOLD, _MONO = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf"


def _rows(description: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(number, file, SHA-256, size, duration) of each item, as printed on both receipts."""
    rows = []
    for number, item in enumerate(description["items"], 1):
        duration = item.get("duration_seconds")
        rows.append(
            (
                str(number),
                item["path"],
                item["sha256"],
                f"{item['size']:,} bytes",
                f"{duration:.1f} s" if isinstance(duration, int | float) else "-",
            )
        )
    return rows


def _people(description: dict[str, Any]) -> list[tuple[str, str]]:
    d = description
    checkpoint = d["checkpoint"]
    return [
        ("Disclosure", d["disclosure"]),
        ("Station", d["station"]),
        ("Case", d["case"] or "(chosen clips)"),
        ("Recipient", d["recipient"]),
        ("Reason", d["reason"]),
        ("Requested by", f"{d['requested_by']}, {d['requested_at']}"),
        ("Approved by", f"{d['approved_by']}, {d['approved_at']}"),
        ("Produced by", f"{d['produced_by']}, {d['produced_at']}"),
        ("Checkpoint", f"tree size {checkpoint['size']}, root hash {checkpoint['root_hash']}"),
        ("Earlier disclosures to this recipient", ", ".join(d["earlier"]) or "none"),
    ]


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 100%; color: #000; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin-bottom: 1.5em; }
th, td { border: 1px solid #444; padding: 0.3em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; word-break: break-all; }
th { background: #eee; }
td.hash { font-family: monospace; font-size: 0.85em; }
col.n { width: 3em; } col.size { width: 10em; } col.duration { width: 6em; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
dt { font-weight: bold; } dd { margin: 0; overflow-wrap: anywhere; word-break: break-all; }
.sign { margin-top: 3em; display: flex; gap: 3em; }
.sign div { border-top: 1px solid #000; padding-top: 0.3em; min-width: 14em; }
"""


def receipt_html(description: dict[str, Any]) -> str:
    """The receipt as one self-contained HTML page (no script, no outside resource)."""
    rows = "".join(
        f'<tr class="item"><td>{n}</td><td>{escape(path)}</td><td class="hash">{sha}</td>'
        f"<td>{escape(size)}</td><td>{escape(duration)}</td></tr>\n"
        for n, path, sha, size, duration in _rows(description)
    )
    people = "".join(
        f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>\n"
        for label, value in _people(description)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Disclosure receipt {escape(description["disclosure"])}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<h1>Receipt of evidence disclosed</h1>
<dl>
{people}</dl>
<table>
<colgroup><col class="n"><col><col><col class="size"><col class="duration"></colgroup>
<thead><tr><th>#</th><th>File</th><th>SHA-256</th><th>Size</th><th>Duration</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
<p>Each file's SHA-256 is in manifest-sha256.txt and SHA256SUMS; README.txt says how to check
them, the custody proofs and the station's signature.</p>
<div class="sign"><div>Received by (name, signature, date)</div><div>Handed over by</div></div>
</body>
</html>
"""


def _needs_cjk(text: str) -> bool:
    """Whether `text` has characters past DejaVu's alphabets (CJK, from U+2E80 on)."""
    return any(ord(c) >= 0x2E80 for c in text)


def receipt_pdf(description: dict[str, Any]) -> bytes:
    """The receipt as an A4 landscape PDF made with fpdf2 (no browser needed)."""
    sans, bold, mono = _FONTS / _SANS, _FONTS / _BOLD, _FONTS / _MONO
    if not all(font.is_file() for font in (sans, bold, mono, _CJK)):
        raise ConfigError(
            f"the receipt's fonts {_SANS}, {_BOLD}, {_MONO} (in {_FONTS}) and {_CJK} are not "
            "all there",
            remedy="install Debian's fonts-dejavu-core and fonts-droid-fallback "
            "(scripts/setup.sh does)",
        )
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_font("sans", fname=str(sans))
    pdf.add_font("sans", style="B", fname=str(bold))
    pdf.add_font("mono", fname=str(mono))
    if any(_needs_cjk(value) for _, value in _people(description)) or any(
        _needs_cjk(path) for _, path, *_ in _rows(description)
    ):
        # Loaded only when needed: parsing the 4 MB font costs some 50 MB of memory.
        pdf.add_font("cjk", fname=str(_CJK))
        pdf.set_fallback_fonts(["cjk"])
    pdf.set_title(f"Disclosure receipt {description['disclosure']}")
    pdf.add_page()
    pdf.set_font("sans", size=15)
    pdf.cell(text="Receipt of evidence disclosed", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("sans", size=9)
    with pdf.table(
        col_widths=(55, 215), first_row_as_headings=False, line_height=5, text_align="LEFT"
    ) as table:
        for label, value in _people(description):
            row = table.row()
            row.cell(label)
            row.cell(value)
    pdf.ln(4)
    with pdf.table(
        col_widths=(8, 92, 115, 32, 20),
        headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
        line_height=5,
        wrapmode="CHAR",
        text_align="LEFT",
    ) as table:
        heading = table.row()
        for title in ("#", "File", "SHA-256", "Size", "Duration"):
            heading.cell(title)
        for n, path, sha, size, duration in _rows(description):
            row = table.row()
            row.cell(n)
            row.cell(path)
            pdf.set_font("mono", size=8)
            row.cell(sha)
            pdf.set_font("sans", size=9)
            row.cell(size)
            row.cell(duration)
    pdf.ln(14)
    pdf.cell(120, 6, "Received by (name, signature, date)", border="T")
    pdf.cell(20, 6, "")
    pdf.cell(100, 6, "Handed over by", border="T")
    return bytes(pdf.output())
