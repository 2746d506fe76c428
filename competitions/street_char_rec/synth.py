"""Demo data in the contest's exact layout: SVHN-like house-number crops rendered with PIL.

``mchar_train/000000.png ...`` + ``mchar_train.json``, ``mchar_val/`` + ``mchar_val.json``, ``mchar_test_a/``. Each
image holds 1-6 digits (mostly 1-4) printed in one of the fonts that travel with the installation (the DejaVu,
STIX and Computer Modern files matplotlib ships in ``mpl-data/fonts/ttf``, :data:`BUNDLED_FONTS`), in varied
colours, on a plate or not, over background clutter, then rotated, cropped with random margins, blurred, rescaled
and JPEG-degraded. The JSON gives each digit's box (left, top, width, height) in the final image's pixels, as SVHN
does. Image ``i`` of a split depends only on ``(seed, split, i)``, so a process pool renders the same files as a
single process.

The machine's own fonts are never looked at, and text is laid out with PIL's basic engine (raqm, when present,
depends on system libraries), so the same seed gives the same files on any machine with the same package versions;
``synth.json`` records a digest of the font files used. ``fonts_dir`` (``--fonts-dir``) adds a folder's fonts.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from common.atomic import atomic_path, write_json
from common.errors import UserError

DIGITS = "0123456789"
#: font files of matplotlib's ``mpl-data/fonts/ttf`` with ordinary (lining) digits; the symbol, display, math-italic
#: and LastResort files are left out because they map the digit code points to other shapes
BUNDLED_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)
SPLITS = {"train": ("mchar_train", True), "val": ("mchar_val", True), "test": ("mchar_test_a", False)}
#: the test split's labels, beside the data (same per-image format as mchar_val.json)
TEST_LABELS = "test_labels.json"
#: number of digits 1..6: mostly 1-4, a few 5-6
N_DIGITS_P = np.array([0.22, 0.38, 0.26, 0.10, 0.03, 0.01])
_MISSING_GLYPH = "\U000f0000"  # a private-use code point no font maps: renders as the font's .notdef glyph


def font_has_digits(font) -> bool:
    """True when every digit renders with ink and differs from the font's missing-glyph (.notdef) box."""
    notdef = font.getmask(_MISSING_GLYPH)
    notdef_bytes = (notdef.size, bytes(notdef))
    for digit in DIGITS:
        mask = font.getmask(digit)
        if mask.getbbox() is None or (mask.size, bytes(mask)) == notdef_bytes:
            return False
    return True


def bundled_fonts() -> list[str]:
    """Paths of :data:`BUNDLED_FONTS` inside the installed matplotlib."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    missing = [name for name in BUNDLED_FONTS if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder}: matplotlib's bundled fonts {missing} are missing; reinstall matplotlib")
    return [str(folder / name) for name in BUNDLED_FONTS]


def find_fonts(dirs: Sequence[str | Path]) -> list[str]:
    """TrueType/OpenType font files under ``dirs`` whose ten digit glyphs all exist, sorted."""
    found = []
    for root in dirs:
        root_path = Path(os.path.expanduser(root))
        if not root_path.is_dir():
            continue
        for path in sorted(root_path.rglob("*")):
            if path.suffix.lower() not in (".ttf", ".otf") or "math" in path.name.lower():
                continue
            try:
                font = _font(str(path), 32)
            except OSError:
                continue
            if font_has_digits(font):
                found.append(str(path))
    return found


def fonts_digest(paths: Sequence[str]) -> str:
    """A short hash of the font files' names and bytes, in order: equal digests, equal glyphs."""
    h = hashlib.sha1()
    for path in paths:
        h.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=512)
def _font(path: str, size: int):
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


@dataclass(frozen=True)
class Rendered:
    image: Image.Image
    label: list[int]
    boxes: list[tuple[int, int, int, int]]  # left, top, width, height


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, size=3))


def _contrasting(rng: np.random.Generator, base: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour whose luminance differs from ``base`` by at least ~90 levels."""
    lum = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    lo, hi = (0, max(int(lum) - 90, 1)) if lum > 128 else (min(int(lum) + 90, 255), 256)
    return _colour(rng, lo, hi)


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int]) -> None:
    w, h = size
    for _ in range(int(rng.integers(2, 9))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(5, w // 2 + 6)), y0 + int(rng.integers(5, h // 2 + 6))
        colour = _colour(rng)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))


def _rotate_point(x: float, y: float, cx: float, cy: float, degrees: float) -> tuple[float, float]:
    """Where PIL's ``Image.rotate(degrees, center=(cx, cy))`` (counter-clockwise on screen) sends ``(x, y)``."""
    a = math.radians(degrees)
    dx, dy = x - cx, y - cy
    return cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a)


def render(rng: np.random.Generator, fonts: Sequence[str]) -> Rendered:
    """One SVHN-like image and its per-digit labels and boxes."""
    n = int(rng.choice(len(N_DIGITS_P), p=N_DIGITS_P)) + 1
    label = [int(d) for d in rng.integers(0, 10, size=n)]
    if n > 1 and label[0] == 0 and rng.random() < 0.9:
        label[0] = int(rng.integers(1, 10))
    font = _font(fonts[int(rng.integers(len(fonts)))], int(rng.integers(22, 50)))
    glyph_boxes = [font.getbbox(str(d)) for d in label]
    gaps = [int(rng.integers(-2, 8)) for _ in label]
    text_w = sum(b[2] - b[0] for b in glyph_boxes) + sum(gaps[:-1])
    text_h = max(b[3] for b in glyph_boxes) - min(b[1] for b in glyph_boxes)
    pad = text_h + text_w // 5 + 4
    canvas_w, canvas_h = text_w + 2 * pad, text_h + 2 * pad
    bg = _colour(rng)
    image = Image.new("RGB", (canvas_w, canvas_h), bg)
    draw = ImageDraw.Draw(image)
    _clutter(draw, rng, (canvas_w, canvas_h))
    x, top = pad, pad - min(b[1] for b in glyph_boxes)
    ink_under = bg
    if rng.random() < 0.5:  # a plate behind the digits
        mx, my = int(rng.integers(3, 14)), int(rng.integers(3, 12))
        ink_under = _colour(rng)
        draw.rounded_rectangle(
            (pad - mx, pad - my, pad + text_w + mx, pad + text_h + my),
            radius=int(rng.integers(0, 8)),
            fill=ink_under,
        )
    ink = _contrasting(rng, ink_under)
    boxes = []
    for digit, (gx0, gy0, gx1, gy1), gap in zip(label, glyph_boxes, gaps, strict=True):
        origin = (x - gx0, top)
        draw.text(origin, str(digit), font=font, fill=ink)
        boxes.append((x, top + gy0, x + gx1 - gx0, top + gy1))
        x += gx1 - gx0 + gap
    angle = float(rng.normal(0, 6))
    cx, cy = pad + text_w / 2, pad + text_h / 2
    image = image.rotate(angle, resample=Image.BILINEAR, center=(cx, cy), fillcolor=bg)
    rotated = []
    for x0, y0, x1, y1 in boxes:
        pts = [_rotate_point(px, py, cx, cy, angle) for px in (x0, x1) for py in (y0, y1)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        rotated.append((min(xs), min(ys), max(xs), max(ys)))
    ux0, uy0 = min(b[0] for b in rotated), min(b[1] for b in rotated)
    ux1, uy1 = max(b[2] for b in rotated), max(b[3] for b in rotated)
    margin_x = rng.uniform(0.05, 0.6) * (ux1 - ux0) / max(n, 2) + 2
    crop = (
        int(max(0, ux0 - margin_x * rng.uniform(0.3, 1.7))),
        int(max(0, uy0 - rng.uniform(0.05, 0.5) * (uy1 - uy0) - 1)),
        int(min(canvas_w, ux1 + margin_x * rng.uniform(0.3, 1.7) + 1)),
        int(min(canvas_h, uy1 + rng.uniform(0.05, 0.5) * (uy1 - uy0) + 1)),
    )
    image = image.crop(crop)
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.4))))
    scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.5))))
    out_w, out_h = max(8, round(image.width * scale)), max(8, round(image.height * scale))
    sx, sy = out_w / image.width, out_h / image.height
    image = image.resize((out_w, out_h), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(rng.integers(25, 96)))
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    final = []
    for x0, y0, x1, y1 in rotated:
        left, top_ = round((x0 - crop[0]) * sx), round((y0 - crop[1]) * sy)
        final.append((left, top_, round((x1 - crop[0]) * sx) - left, round((y1 - crop[1]) * sy) - top_))
    return Rendered(image=image, label=label, boxes=final)


def _render_range(args: tuple[Path, int, int, int, int, tuple]) -> dict[str, dict]:
    folder, split_index, start, stop, seed, fonts = args
    entries = {}
    for i in range(start, stop):
        rng = np.random.default_rng([seed, split_index, i])
        item = render(rng, fonts)
        name = f"{i:06d}.png"
        item.image.save(folder / name, format="PNG", compress_level=1)
        entries[name] = {
            "height": [b[3] for b in item.boxes],
            "label": item.label,
            "left": [b[0] for b in item.boxes],
            "top": [b[1] for b in item.boxes],
            "width": [b[2] for b in item.boxes],
        }
    return entries


def write_dataset(
    out: str | Path,
    n_train: int = 3000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    fonts: Sequence[str] | None = None,
    fonts_dir: str | Path | None = None,
) -> dict:
    """Render the three splits under ``out``; returns counts, the number and digest of the fonts, and images/s.

    ``fonts`` replaces the bundled fonts; ``fonts_dir`` adds every usable font under that folder to them."""
    import time

    out = Path(out)
    fonts = list(bundled_fonts() if fonts is None else fonts)
    if fonts_dir is not None:
        if not Path(fonts_dir).is_dir():
            raise UserError(f"--fonts-dir {fonts_dir} is not a folder")
        extra = find_fonts([fonts_dir])
        if not extra:
            raise UserError(f"--fonts-dir {fonts_dir}: no .ttf/.otf font with all ten digits found")
        fonts += extra
    if not fonts:
        raise UserError("no fonts to render with")
    fonts = tuple(fonts)
    workers = workers or min(os.cpu_count() or 1, 8)
    started = time.perf_counter()
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for split_index, (split, (folder_name, labelled)) in enumerate(SPLITS.items()):
        n = counts[split]
        if n == 0:  # an empty split is left out (an empty test folder would be an error for the reader)
            continue
        folder = out / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        chunk = max(1, min(500, math.ceil(n / workers)))
        jobs = [(folder, split_index, s, min(s + chunk, n), seed, fonts) for s in range(0, n, chunk)]
        entries: dict[str, dict] = {}
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for part in pool.map(_render_range, jobs):
                    entries.update(part)
        else:
            for job in jobs:
                entries.update(_render_range(job))
        # the test split's labels go beside the data, as the news synth's test_labels.csv: for scoring a
        # submission (bench/street_models.py), never read by the contest's reader
        with atomic_path(out / (f"{folder_name}.json" if labelled else TEST_LABELS)) as tmp:
            tmp.write_text(json.dumps(entries), encoding="utf-8")
    seconds = time.perf_counter() - started
    total = n_train + n_val + n_test
    summary = {
        "out": str(out),
        "images": total,
        "seconds": round(seconds, 3),
        "images_per_s": round(total / max(seconds, 1e-9), 1),
        "fonts": len(fonts),
        "fonts_digest": fonts_digest(fonts),
        "seed": seed,
    }
    write_json(out / "synth.json", summary)
    return summary
