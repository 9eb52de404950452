"""The embedded "shapes" dataset: deterministic images of 1-3 coloured shapes on textured backgrounds, 5 captions each,
and a per-pixel ground-truth concept map, written as real JPEG/PNG files + a Karpathy-format JSON so it goes through
the normal reader (`read_karpathy`).

Layout under `root`:
  images/{train,val,test}/NNNNNN.jpg   the images (image id = NNNNNN)
  concepts/NNNNNN.png                  8-bit map of concept ids (index into CONCEPTS), same size as the image
  dataset_shapes.json                  Karpathy format (+ per-image "objects" and "background" metadata)
  manifest.json                        generator version + config; written last, so its presence means "complete"

Concepts: "background" + every "colour shape" pair, so colour and shape accuracy can both be derived
(`COLOUR_OF`, `SHAPE_OF`), + each background texture as a concept of its own ("striped background", ...: stuff
concepts, as COCO's RAM tags name grass, sky, wall), which some captions name ("... on a striped background").
The concept maps on disk hold the objects (0 = background); `patch_concepts(..., background=WORD)` labels the
background patches with the image's texture concept instead. Every image is a function of (seed, image id) only.
"""

from __future__ import annotations

# Deferred imports: torch, for patch_concepts only, so generating, reading and checking data stays torch-free
# (`fsgr check-data`, `fsgr build-vocab`).

import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from fsgr.data.config import SyntheticConfig
from fsgr.errors import DataError
from fsgr.files import read_json

GENERATOR_VERSION = 1

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 50, 175),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZE_WORDS = {"small": ("small", "small", "little", "tiny"), "large": ("large", "large", "big", "big")}
BACKGROUNDS = {"speckled": "noise", "striped": "stripes", "checkered": "checker", "shaded": "gradient",
               "mottled": "blotches"}

OBJECT_CONCEPTS: list[str] = [f"{c} {s}" for c in COLOURS for s in SHAPES]
BACKGROUND_CONCEPTS: list[str] = [f"{word} background" for word in BACKGROUNDS]
# ids: 0 "background" (the generic row, and the concept maps' value for every non-object pixel), 1..24 the objects,
# then the textures: appended, so the object ids of every existing dataset and label file stay what they were
CONCEPTS: list[str] = ["background"] + OBJECT_CONCEPTS + BACKGROUND_CONCEPTS
BACKGROUND = 0
FIRST_BACKGROUND_CONCEPT = 1 + len(OBJECT_CONCEPTS)
COLOUR_NAMES = list(COLOURS)
# concept id -> colour index / shape index (-1 for background concepts)
COLOUR_OF: list[int] = [-1] + [ci for ci in range(len(COLOURS)) for _ in SHAPES] + [-1] * len(BACKGROUNDS)
SHAPE_OF: list[int] = [-1] + [si for _ in COLOURS for si in range(len(SHAPES))] + [-1] * len(BACKGROUNDS)


def concept_names() -> list[str]:
    """The demo codebook's class names (index = concept id)."""
    return list(CONCEPTS)


def concept_id(colour: str, shape: str) -> int:
    return 1 + COLOUR_NAMES.index(colour) * len(SHAPES) + SHAPES.index(shape)


def background_concept_id(word: str) -> int:
    """The concept id of a background texture word ("striped" -> the id of "striped background")."""
    return FIRST_BACKGROUND_CONCEPT + list(BACKGROUNDS).index(word)


def is_background_concept(concept: int) -> bool:
    """The generic "background" row or a texture concept: what a background patch may be labelled."""
    return concept == BACKGROUND or concept >= FIRST_BACKGROUND_CONCEPT


# ---- drawing ---------------------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A low-saturation textured background (never one of the object colours' saturation levels)."""
    word = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    kind = BACKGROUNDS[word]
    base = rng.uniform(70, 200)
    tint = rng.uniform(-18, 18, size=3)
    a = np.full((size, size, 3), base, dtype=np.float32) + tint.astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amp = rng.uniform(18, 35)
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 16)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        a += (amp * wave)[..., None]
    elif kind == "checker":
        cell = int(rng.integers(6, 16))
        board = ((xx // cell + yy // cell) % 2) * 2 - 1
        a += (amp * 0.8 * board)[..., None]
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / size
        a += (amp * 2.5 * (ramp - ramp.mean()))[..., None]
    elif kind == "blotches":
        coarse = rng.normal(0, 1, size=(6, 6, 1)).astype(np.float32)
        up = np.asarray(Image.fromarray(((coarse[..., 0] + 3) * 40).clip(0, 255).astype(np.uint8)).resize(
            (size, size), Image.BICUBIC), dtype=np.float32) / 40 - 3
        a += (amp * up)[..., None]
    a += rng.normal(0, 9 if kind == "noise" else 4, size=a.shape).astype(np.float32)
    return a, word


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = r * 0.86
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        R = r * 1.15
        return [(cx + R * math.cos(a), cy + 0.12 * r + R * math.sin(a))
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        pts = []
        for k in range(10):
            R = r * 1.15 if k % 2 == 0 else r * 0.5
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + R * math.cos(a), cy + R * math.sin(a)))
        return pts
    raise ValueError(shape)


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=fill)


def _any_pair(rng: np.random.Generator, placed: int) -> tuple[str, str]:
    return COLOUR_NAMES[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))]


def _place(rng: np.random.Generator, n: int, size: int, cfg: SyntheticConfig, pick=_any_pair) -> list[dict]:
    """n non-overlapping objects with distinct (colour, shape); `pick(rng, objects placed so far)` draws a pair."""
    objects: list[dict] = []
    used: set[tuple[str, str]] = set()
    tries = 0
    while len(objects) < n and tries < 200:
        tries += 1
        size_name = "small" if rng.random() < 0.5 else "large"
        r = (cfg.small_size if size_name == "small" else cfg.large_size) * size * rng.uniform(0.9, 1.1)
        m = r * 1.2 + 1
        cx, cy = rng.uniform(m, size - m), rng.uniform(m, size - m)
        if any(math.hypot(cx - o["cx"], cy - o["cy"]) < (r + o["r"]) * 1.25 + 2 for o in objects):
            continue
        colour, shape = pick(rng, len(objects))
        if (colour, shape) in used:
            continue
        used.add((colour, shape))
        objects.append({"colour": colour, "shape": shape, "size": size_name, "cx": float(cx), "cy": float(cy),
                        "r": float(r)})
    return objects


def render(image_id: int, cfg: SyntheticConfig) -> tuple[Image.Image, np.ndarray, list[dict], str]:
    """-> (RGB image, (H, W) uint8 concept map, objects, background word). A function of (cfg.seed, image_id)."""
    rng = np.random.default_rng([cfg.seed, image_id])
    size = cfg.image_size
    a, bg_word = _background(rng, size)
    n = int(rng.integers(1, cfg.max_objects + 1))
    objects = _place(rng, n, size, cfg, _longtail_pick(image_id, cfg) if cfg.world == "longtail" else _any_pair)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    label = Image.new("L", (size, size), BACKGROUND)
    d_img, d_lab = ImageDraw.Draw(img), ImageDraw.Draw(label)
    for o in objects:
        rgb = np.asarray(COLOURS[o["colour"]], dtype=np.float32) + rng.uniform(-14, 14, size=3)
        _draw(d_img, o["shape"], o["cx"], o["cy"], o["r"], tuple(int(v) for v in np.clip(rgb, 0, 255)))
        _draw(d_lab, o["shape"], o["cx"], o["cy"], o["r"], concept_id(o["colour"], o["shape"]))
    # light sensor noise over everything, so object pixels are not flat either
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, size=(size, size, 3), dtype=np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img, np.asarray(label, dtype=np.uint8), objects, bg_word


# ---- the long-tail world -------------------------------------------------------------------------------------------
# Which colour-shape pairs a training image may show. The paper's premise: more concepts in the images than the
# captions teach, the text tower's knowledge bridging the gap (issue 22). The tiny CLIP was pretrained evenly over
# every concept; the captioner's training data is not:
#   novel  a diagonal of the colour x shape square (a Latin-square choice: one pair per shape, each colour at most
#          once), in no training image, while every colour and every shape stays seen in other pairs;
#   tail   TAIL_PER_K concepts for each k in TAIL_K, each in exactly k training images (the first object there);
#   head   the rest, drawn uniformly everywhere else.
# val: head only (it selects checkpoints). test: thirds, in order: iid (head only), tail (first object a tail
# concept, cycling), novel (first object a novel pair, cycling); `longtail_subset` names an image's third.

TAIL_K = (1, 3, 10)
TAIL_PER_K = 2
NOVEL_PAIRS: list[tuple[str, str]] = [(COLOUR_NAMES[i], SHAPES[i]) for i in range(len(SHAPES))]
_SEEN_PAIRS = [(c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in NOVEL_PAIRS]
# spread over colours and shapes: every third seen pair from the second
TAIL_PAIRS: dict[int, list[tuple[str, str]]] = {
    k: _SEEN_PAIRS[1::3][i * TAIL_PER_K:(i + 1) * TAIL_PER_K] for i, k in enumerate(TAIL_K)}
HEAD_PAIRS: list[tuple[str, str]] = [p for p in _SEEN_PAIRS if all(p not in t for t in TAIL_PAIRS.values())]


def longtail_concepts() -> dict:
    """The long-tail world's concept groups by name: {"head": [...], "tail": {k: [...]}, "novel": [...]}."""
    name = lambda pair: f"{pair[0]} {pair[1]}"  # noqa: E731
    return {"head": [name(p) for p in HEAD_PAIRS], "tail": {k: [name(p) for p in v] for k, v in TAIL_PAIRS.items()},
            "novel": [name(p) for p in NOVEL_PAIRS]}


def _tail_images(cfg: SyntheticConfig) -> dict[int, tuple[str, str]]:
    """Training image id -> the tail pair it shows: k images per tail concept, spread by a seeded permutation."""
    slots = [pair for k, pairs in TAIL_PAIRS.items() for pair in pairs for _ in range(k)]
    if len(slots) > cfg.num_train:
        raise DataError(f"synthetic.world=longtail needs at least {len(slots)} training images, got {cfg.num_train}")
    ids = np.random.default_rng([cfg.seed, 7]).permutation(cfg.num_train)[:len(slots)]
    return {int(i): pair for i, pair in zip(ids, slots)}


def longtail_subset(image_id: int, cfg: SyntheticConfig) -> Optional[str]:
    """'iid', 'tail' or 'novel' for a long-tail test image (thirds in that order), else None."""
    first = cfg.num_train + cfg.num_val
    if cfg.world != "longtail" or image_id < first:
        return None
    third = max(1, -(-cfg.num_test // 3))
    return ("iid", "tail", "novel")[min(2, (image_id - first) // third)]


def _longtail_pick(image_id: int, cfg: SyntheticConfig):
    """The `pick` of `_place` for a long-tail image: its forced first pair (tail / novel), then head pairs."""
    first = None
    if image_id < cfg.num_train:
        first = _tail_images(cfg).get(image_id)
    else:
        subset = longtail_subset(image_id, cfg)
        index = (image_id - cfg.num_train - cfg.num_val) % max(1, -(-cfg.num_test // 3))    # within its third
        if subset == "tail":
            pairs = [p for v in TAIL_PAIRS.values() for p in v]
            first = pairs[index % len(pairs)]
        elif subset == "novel":
            first = NOVEL_PAIRS[index % len(NOVEL_PAIRS)]

    def pick(rng: np.random.Generator, placed: int) -> tuple[str, str]:
        if placed == 0 and first is not None:
            return first
        return HEAD_PAIRS[int(rng.integers(len(HEAD_PAIRS)))]
    return pick


# ---- captions --------------------------------------------------------------------------------------------------------


def relation(a: dict, b: dict) -> str:
    """Where a is relative to b (image y grows downwards)."""
    dx, dy = a["cx"] - b["cx"], a["cy"] - b["cy"]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _position(o: dict, size: int) -> str:
    col = "left" if o["cx"] < size / 3 else ("right" if o["cx"] > 2 * size / 3 else "")
    row = "top" if o["cy"] < size / 3 else ("bottom" if o["cy"] > 2 * size / 3 else "")
    if row and col:
        return f"{row} {col}"
    return row or col or "middle"


def _np(o: dict, rng: np.random.Generator, size: Optional[bool] = None) -> str:
    with_size = rng.random() < 0.6 if size is None else size
    words = [SIZE_WORDS[o["size"]][int(rng.integers(4))]] if with_size else []
    return " ".join(words + [o["colour"], o["shape"]])


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def captions_for(objects: list[dict], bg: str, size: int, rng: np.random.Generator, k: int = 5) -> list[str]:
    """k distinct captions from varied templates: colours, shapes, sizes, relations, positions, background."""
    o = objects
    P = lambda obj, s=None: _a(_np(obj, rng, s))  # noqa: E731 - a fresh random noun phrase each call
    if len(o) == 1:
        x = o[0]
        makers = [
            lambda: P(x, True),
            lambda: f"{P(x)} on {_a(bg)} background",
            lambda: f"there is {P(x)} in the picture",
            lambda: f"a picture of {P(x)}",
            lambda: f"{P(x)} in the {_position(x, size)} of the image",
            lambda: f"one {x['size'] if rng.random() < 0.5 else SIZE_WORDS[x['size']][2]} {x['shape']} that is "
                    f"{x['colour']}",
            lambda: f"a single {x['colour']} {x['shape']} on {_a(bg)} background",
            lambda: f"{P(x)} near the {_position(x, size)}",
        ]
    elif len(o) == 2:
        x, y = o if rng.random() < 0.5 else o[::-1]
        makers = [
            lambda: f"{P(x)} {relation(x, y)} {P(y)}",
            lambda: f"{P(y)} {relation(y, x)} {P(x)}",
            lambda: f"{P(x)} and {P(y)}",
            lambda: f"two shapes , {P(x)} and {P(y)}",
            lambda: f"there is {P(x)} {relation(x, y)} {P(y)}",
            lambda: f"{P(y, True)} and {P(x, True)} on {_a(bg)} background",
            lambda: f"two shapes on {_a(bg)} background : {P(x)} {relation(x, y)} {P(y)}",
        ]
    else:
        idx = rng.permutation(len(o))
        x, y, z = (o[i] for i in idx[:3])
        makers = [
            lambda: f"{P(x)} , {P(y)} and {P(z)}",
            lambda: f"three shapes : {P(x)} , {P(y)} and {P(z)}",
            lambda: f"{P(x)} {relation(x, y)} {P(y)} and {P(z)}",
            lambda: f"{P(z)} and {P(y)} {relation(y, x)} {P(x)}",
            lambda: f"three shapes on {_a(bg)} background including {P(y)}",
            lambda: f"there are three shapes , {P(z)} {relation(z, x)} {P(x)} and {P(y)}",
        ]
    out: list[str] = []
    order = rng.permutation(len(makers)).tolist()
    attempts = 0
    while len(out) < k and attempts < 10 * k:
        make = makers[order[attempts % len(makers)]]
        attempts += 1
        text = make()
        if text not in out:
            out.append(text)
    return out


# ---- generation on disk ----------------------------------------------------------------------------------------------


def _manifest(cfg: SyntheticConfig) -> dict:
    d = asdict(cfg)
    d.pop("root")
    if d["world"] == "shapes":     # the original world: its datasets on disk (written before worlds existed) match
        d.pop("world")
    return {"generator_version": GENERATOR_VERSION, "config": d}


def _split_of(image_id: int, cfg: SyntheticConfig) -> str:
    if image_id < cfg.num_train:
        return "train"
    return "val" if image_id < cfg.num_train + cfg.num_val else "test"


def incomplete_reason(root: Path, cfg: SyntheticConfig) -> Optional[str]:
    """None when `root` holds the complete dataset of `cfg`, else why not (reads only)."""
    root = Path(root)
    manifest = root / "manifest.json"
    if not manifest.is_file() or not (root / "dataset_shapes.json").is_file():
        return "no synthetic shapes dataset here (manifest.json / dataset_shapes.json missing)"
    try:
        found = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "manifest.json is not valid JSON"
    if found != _manifest(cfg):
        return f"made with another config ({_config_difference(found, _manifest(cfg))})"
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val), ("test", cfg.num_test)):
        folder = root / "images" / split
        have = sum(1 for _ in os.scandir(folder)) if folder.is_dir() else 0
        if n and have != n:
            return f"images/{split} holds {have} files, the dataset has {n}"
    return None


def is_complete(root: Path, cfg: SyntheticConfig) -> bool:
    return incomplete_reason(root, cfg) is None


def _config_difference(found: dict, wanted: dict) -> str:
    a = {"generator_version": found.get("generator_version"), **(found.get("config") or {})}
    b = {"generator_version": wanted["generator_version"], **wanted["config"]}
    diffs = [f"{k} {a.get(k)!r} there, {b.get(k)!r} asked" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(diffs[:3]) + (f" and {len(diffs) - 3} more" if len(diffs) > 3 else "")


def config_from_root(root: str | os.PathLike) -> SyntheticConfig:
    """The config a dataset on disk was generated with (its manifest.json): what a check compares it against."""
    root = Path(root)
    manifest = root / "manifest.json"
    if root.is_file():
        raise DataError(f"{root}: is a file; give the folder of a synthetic shapes dataset")
    if not manifest.is_file():
        raise DataError(f"{root}: no synthetic shapes dataset here (no manifest.json); `fsgr train` or `fsgr demo` "
                        f"generate one")
    found = read_json(manifest, "a synthetic dataset manifest")
    try:
        return SyntheticConfig(root=str(root), **found["config"])
    except (KeyError, TypeError) as exc:
        raise DataError(f"{manifest}: not a synthetic dataset manifest ({type(exc).__name__}: {exc})") from None


def _write(out: Path, cfg: SyntheticConfig) -> None:
    for split in ("train", "val", "test"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "concepts").mkdir(parents=True, exist_ok=True)
    total = cfg.num_train + cfg.num_val + cfg.num_test
    ext = cfg.image_format
    images = []
    for image_id in range(total):
        img, label, objects, bg = render(image_id, cfg)
        split = _split_of(image_id, cfg)
        name = f"{image_id:06d}.{ext}"
        if ext == "jpg":
            img.save(out / "images" / split / name, quality=cfg.jpeg_quality)
        else:
            img.save(out / "images" / split / name, compress_level=1)
        Image.fromarray(label, "L").save(out / "concepts" / f"{image_id:06d}.png", compress_level=1)
        rng = np.random.default_rng([cfg.seed, image_id, 1])
        caps = captions_for(objects, bg, cfg.image_size, rng, cfg.captions_per_image)
        sentids = [image_id * cfg.captions_per_image + k for k in range(len(caps))]
        images.append({
            "filepath": f"images/{split}", "filename": name, "imgid": image_id, "split": split,
            "sentids": sentids,
            "sentences": [{"raw": c, "tokens": c.split(), "imgid": image_id, "sentid": s}
                          for c, s in zip(caps, sentids)],
            "background": bg,
            "objects": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in ob.items()} for ob in objects],
        })
        subset = longtail_subset(image_id, cfg)
        if subset is not None:
            images[-1]["subset"] = subset
    dataset = {"dataset": "shapes", "images": images}
    if cfg.world == "longtail":
        dataset["world"] = {"name": "longtail", **longtail_concepts()}
    (out / "dataset_shapes.json").write_text(json.dumps(dataset))
    (out / "manifest.json").write_text(json.dumps(_manifest(cfg)))


def generate(cfg: SyntheticConfig | None = None, root: str | os.PathLike | None = None) -> Path:
    """Generate the dataset under `root` (default cfg.root) unless a complete one with the same config is there.
    Written to a sibling temp folder and renamed into place, so a crash never leaves a half dataset that looks done.
    A folder of ours with missing files is regenerated; one made with another config (another size, seed, ...) and a
    non-empty folder that is not ours are refused: generation never silently replaces data."""
    cfg = cfg or SyntheticConfig()
    if cfg.max_objects < 1 or cfg.max_objects > 3:
        raise DataError(f"synthetic.max_objects={cfg.max_objects}: must be 1..3")
    if cfg.captions_per_image < 1:
        raise DataError("synthetic.captions_per_image must be >= 1")
    root = Path(root if root is not None else cfg.root)
    if is_complete(root, cfg):
        return root
    if root.exists() and any(root.iterdir()) and not (root / "manifest.json").is_file() and not (
            root / "dataset_shapes.json").is_file():
        raise DataError(f"{root}: exists and is not a synthetic shapes dataset; choose another data.synthetic.root")
    reason = incomplete_reason(root, cfg)
    if reason.startswith("made with another config"):
        raise DataError(f"{root}: holds a synthetic dataset {reason}; choose another data.synthetic.root or remove "
                        f"the folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    _write(tmp, cfg)
    if is_complete(root, cfg):  # another process finished first
        shutil.rmtree(tmp)
        return root
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        os.replace(root, old)
        shutil.rmtree(old)
    os.replace(tmp, root)
    return root


# ---- concept maps -> patch labels ------------------------------------------------------------------------------------


def concept_map_path(root: str | os.PathLike, image_id: int) -> Path:
    return Path(root) / "concepts" / f"{image_id:06d}.png"


def load_concept_map(root: str | os.PathLike, image_id: int) -> np.ndarray:
    path = concept_map_path(root, image_id)
    if not path.is_file():
        raise DataError(f"{path}: concept map of image {image_id} not found")
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.uint8)


def patch_concepts(label_map, grid: int, min_object_fraction: float = 0.25, background: Optional[str] = None):
    """(H, W) concept map -> LongTensor (grid*grid,), row-major patches: the most frequent object concept of a patch
    whose pixels are at least `min_object_fraction` object, else background: 0, or with `background` (the image's
    texture word) that texture's concept. Object patches: `is_background_concept` false."""
    import torch

    lab = np.asarray(label_map)
    if lab.ndim != 2:
        raise DataError(f"concept map must be 2-d (H, W), got shape {lab.shape}")
    h, w = lab.shape
    k = len(CONCEPTS)
    if lab.size and int(lab.max()) >= k:
        raise DataError(f"concept map holds id {int(lab.max())} >= {k} concepts")
    onehot = np.zeros((h, w, k), dtype=np.int32)
    np.put_along_axis(onehot, lab[..., None].astype(np.int64), 1, axis=2)
    rows = np.linspace(0, h, grid + 1).round().astype(int)[:-1]
    cols = np.linspace(0, w, grid + 1).round().astype(int)[:-1]
    counts = np.add.reduceat(np.add.reduceat(onehot, rows, axis=0), cols, axis=1)  # (grid, grid, k)
    total = counts.sum(-1)
    obj = counts[..., 1:]
    best = obj.argmax(-1) + 1
    is_obj = obj.sum(-1) >= min_object_fraction * total
    labels = np.where(is_obj, best, BACKGROUND if background is None else background_concept_id(background))
    return torch.from_numpy(labels.reshape(-1).astype(np.int64))


def object_patch_mask(patch_labels):
    """Boolean mask of object patches (not "background" nor a texture concept)."""
    return (patch_labels != BACKGROUND) & (patch_labels < FIRST_BACKGROUND_CONCEPT)


class PatchLabels:
    """image_id -> patch concept labels (grid*grid,), for CaptionDataset(patch_labels=...). Picklable.
    textures: background patches take the image's texture concept (from dataset_shapes.json), else "background"."""

    def __init__(self, root: str | os.PathLike, grid: int, min_object_fraction: float = 0.25, textures: bool = False):
        self.root, self.grid, self.min_object_fraction = Path(root), grid, min_object_fraction
        self.textures = textures
        self._backgrounds: Optional[dict[int, str]] = None       # image id -> texture word, read on first use

    def __call__(self, image_id: int):
        return patch_concepts(load_concept_map(self.root, image_id), self.grid, self.min_object_fraction,
                              background=self._texture(image_id) if self.textures else None)

    def _texture(self, image_id: int) -> str:
        if self._backgrounds is None:
            data = read_json(self.root / "dataset_shapes.json", "a synthetic dataset index")
            self._backgrounds = {int(im["imgid"]): im["background"] for im in data["images"]}
        if image_id not in self._backgrounds:
            raise DataError(f"{self.root / 'dataset_shapes.json'}: no image {image_id}")
        return self._backgrounds[image_id]
