"""Maps people believe (`fsgr explain`): the semantic head's patch concepts drawn over the image, and per word where
the decoder's cross-attention looked.

* Background stays background: patches labelled with the codebook's background concept (the demo codebook has one) or
  whose label has a confidence below `min_confidence` are left untinted and counted as "background" in the legend.
  The labels are MaskCLIP dense labels over the whole codebook and the confidence their softmax probability over
  it (Captioner.explain, FSGRCaptioner.encode(concept_map=True)), not the semantic head's per-image top-k assignment.
* The overlay is smooth at image resolution: one channel per object concept plus one for the background, upsampled
  bilinearly from the patch grid; each pixel takes its strongest channel's colour, and the tint fades where the
  background channel rises, so region borders follow the image rather than the 16 px patch staircase.
* Each connected object region (4-neighbour patches of one concept) of at least `label_min_patches` is labelled with
  its concept's name at its centre.
* `word_attention`: per generated word, the decoder's cross-attention over the patches (softmax(q k^T / sqrt(dh)),
  averaged over heads and layers), from a teacher-forced pass over the caption's tokens.
"""

from __future__ import annotations

import colorsys
from collections import deque

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = -1
BACKGROUND_RGB = (150, 150, 150)


def _font(size: int = 12):
    return ImageFont.load_default(size=size)            # Pillow's scalable default font: no font file needed


def palette(n: int) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb((i * 0.61803398875) % 1.0, 0.75, 0.95))
            for i in range(max(n, 1))]


def object_grid(concept_ids: torch.Tensor, confidence, background_ids, min_confidence: float) -> torch.Tensor:
    """(gh, gw) concept ids -> the same with BACKGROUND where the patch is background or below `min_confidence`."""
    grid = concept_ids.clone()
    for b in background_ids:
        grid[concept_ids == b] = BACKGROUND
    if confidence is not None and min_confidence > 0:
        grid[confidence < min_confidence] = BACKGROUND
    return grid


def regions(grid: torch.Tensor) -> list[tuple[int, list[tuple[int, int]]]]:
    """Connected regions (4-neighbour) of equal non-background ids: [(concept id, [(row, col), ...])]."""
    gh, gw = grid.shape
    cells = grid.tolist()
    seen = [[False] * gw for _ in range(gh)]
    found = []
    for r0 in range(gh):
        for c0 in range(gw):
            cid = cells[r0][c0]
            if seen[r0][c0] or cid == BACKGROUND:
                continue
            seen[r0][c0] = True
            queue, members = deque([(r0, c0)]), []
            while queue:
                r, c = queue.popleft()
                members.append((r, c))
                for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= rr < gh and 0 <= cc < gw and not seen[rr][cc] and cells[rr][cc] == cid:
                        seen[rr][cc] = True
                        queue.append((rr, cc))
            found.append((cid, members))
    return found


def smooth_overlay(grid: torch.Tensor, colours: dict[int, tuple[int, int, int]], size: tuple[int, int],
                   alpha: float = 0.5) -> Image.Image:
    """RGBA overlay of `size` (w, h): the strongest upsampled concept channel's colour, transparent on background."""
    w, h = size
    ids = sorted(colours)
    channels = torch.stack([(grid == BACKGROUND).float()] + [(grid == i).float() for i in ids])   # (1+K, gh, gw)
    up = F.interpolate(channels[None], size=(h, w), mode="bilinear", align_corners=False)[0]      # (1+K, h, w)
    label = up[1:].argmax(dim=0) if ids else torch.zeros(h, w, dtype=torch.long)
    table = torch.tensor([colours[i] for i in ids] or [(0, 0, 0)], dtype=torch.float32)          # (K, 3)
    rgb = table[label]                                                                             # (h, w, 3)
    a = (alpha * (1.0 - up[0])).clamp(0, 1) * 255                                                  # fades on bg
    rgba = torch.cat([rgb, a[..., None]], dim=-1).round().to(torch.uint8).numpy()
    return Image.fromarray(rgba, mode="RGBA")


def heat_overlay(weights: torch.Tensor, size: tuple[int, int], alpha: float = 0.75) -> Image.Image:
    """(gh, gw) attention -> RGBA of `size`: warm colour, opacity rising with the weight (min-max normalised)."""
    w, h = size
    up = F.interpolate(weights[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    up = ((up - up.min()) / (up.max() - up.min()).clamp_min(1e-12)).clamp(0, 1)
    red = torch.full_like(up, 255.0)
    green = 200.0 * up                                                     # red -> yellow as attention grows
    rgba = torch.stack([red, green, torch.zeros_like(up), 255.0 * alpha * up], dim=-1)
    return Image.fromarray(rgba.round().to(torch.uint8).numpy(), mode="RGBA")


@torch.no_grad()
def word_attention(model, encoded, tokens: list[int], bos_id: int) -> torch.Tensor:
    """Cross-attention of each generated token over the patches: (len(tokens), P), each row summing to 1.

    A teacher-forced pass of the decoder over [<bos>] + tokens[:-1] (the inputs that produced each token), asking
    its layer pass for each layer's cross-attention weights; averaged over heads and layers."""
    inputs = torch.tensor([[bos_id] + tokens[:-1]], device=encoded.memory.device)          # (1, L)
    weights: list[torch.Tensor] = []
    model.decoder(inputs, encoded.memory[:1], encoded.memory_pos, cross_weights=weights)   # layers x (1, h, L, P)
    return torch.stack(weights).mean(dim=(0, 2))[0]                                       # (L, P)


def draw_explanation(exp, top: int = 8, width: int = 448, min_confidence: float = 0.0,
                     label_min_patches: int = 2) -> Image.Image:
    """The image with the smooth concept overlay and region labels, the caption, a legend of the `top` concepts by
    patch count (background first), and, when the explanation has word attention, one small map per word."""
    font = _font()
    img = exp.image.resize((width, int(round(width * exp.image.height / exp.image.width))), Image.BICUBIC)
    grid = object_grid(exp.concept_ids, exp.confidence, exp.background_ids, min_confidence)
    gh, gw = grid.shape
    ids, counts = grid.flatten().unique(return_counts=True)
    count_of = dict(zip(ids.tolist(), counts.tolist()))
    order = [i for i, _ in sorted(count_of.items(), key=lambda kv: -kv[1]) if i != BACKGROUND]
    colours = dict(zip(order, palette(len(order))))
    blended = Image.alpha_composite(img.convert("RGBA"), smooth_overlay(grid, colours, img.size)).convert("RGB")
    d = ImageDraw.Draw(blended)
    cw, ch = blended.width / gw, blended.height / gh
    for cid, cells in regions(grid):
        if len(cells) < label_min_patches:
            continue
        name = exp.concept_names.get(cid, f"concept {cid}")
        x = (sum(c for _, c in cells) / len(cells) + 0.5) * cw
        y = (sum(r for r, _ in cells) / len(cells) + 0.5) * ch
        tw = font.getlength(name)
        d.rectangle([x - tw / 2 - 3, y - 7, x + tw / 2 + 3, y + 7], fill=(0, 0, 0))
        d.text((x - tw / 2, y - 6), name, fill=(255, 255, 255), font=font)

    line_h = 16
    caption_lines = _wrap(exp.caption, font, width - 16)
    legend = ([BACKGROUND] if BACKGROUND in count_of else []) + order[:top]
    words = _word_tiles(exp, width) if exp.word_attention is not None else None
    height = blended.height + 12 + line_h * (len(caption_lines) + 1 + len(legend)) + 8
    canvas = Image.new("RGB", (width, height + (words.height if words else 0)), (255, 255, 255))
    canvas.paste(blended, (0, 0))
    d = ImageDraw.Draw(canvas)
    y = blended.height + 6
    for line in caption_lines:
        d.text((8, y), line, fill=(0, 0, 0), font=font)
        y += line_h
    d.text((8, y), f"concepts ({len(order)} objects on a {gh}x{gw} grid):", fill=(80, 80, 80), font=font)
    y += line_h
    for cid in legend:
        if cid == BACKGROUND:
            d.rectangle([8, y + 2, 20, y + 12], fill=(255, 255, 255), outline=BACKGROUND_RGB)
            label = "background" + (f" (or confidence < {min_confidence:g})" if min_confidence > 0 else "")
        else:
            d.rectangle([8, y + 2, 20, y + 12], fill=colours[cid], outline=(0, 0, 0))
            label = exp.concept_names.get(cid, f"concept {cid}")
        d.text((26, y), f"{label}  ({count_of[cid]} patches)", fill=(0, 0, 0), font=font)
        y += line_h
    if words:
        canvas.paste(words, (0, height))
    return canvas


def _word_tiles(exp, width: int, per_row: int = 4) -> Image.Image:
    """One thumbnail per word with its cross-attention heat map, the word underneath."""
    font = _font()
    tile_w = (width - 8 * (per_row + 1)) // per_row
    tile_h = int(round(tile_w * exp.image.height / exp.image.width))
    thumb = exp.image.resize((tile_w, tile_h), Image.BICUBIC).convert("RGBA")
    n = len(exp.words)
    rows = (n + per_row - 1) // per_row
    sheet = Image.new("RGB", (width, 18 + rows * (tile_h + 22)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    d.text((8, 2), "where the decoder looked, per word:", fill=(80, 80, 80), font=font)
    gh, gw = exp.concept_ids.shape
    for i, (word, weights) in enumerate(zip(exp.words, exp.word_attention)):
        x = 8 + (i % per_row) * (tile_w + 8)
        y = 18 + (i // per_row) * (tile_h + 22)
        tile = Image.alpha_composite(thumb, heat_overlay(weights.view(gh, gw), thumb.size)).convert("RGB")
        sheet.paste(tile, (x, y))
        d.text((x + (tile_w - font.getlength(word)) / 2, y + tile_h + 4), word, fill=(0, 0, 0), font=font)
    return sheet


def _wrap(text: str, font, max_width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        trial = f"{line} {w}".strip()
        if font.getlength(trial) > max_width and line:
            lines.append(line)
            line = w
        else:
            line = trial
    lines.append(line)
    return lines
