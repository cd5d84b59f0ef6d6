"""Working size and the released mask processing: dilation, ProPainter masks, blur and compose.

Everything runs in torch on [T, H, W] masks (batched over frames, CPU or CUDA) and reproduces
the released arithmetic bit for bit (reference README §5.1): cv2's erode/dilate with its default
border, scipy's cross-shaped binary dilation, cv2's fixed-point 8-bit GaussianBlur, and the
float64/float32 blend and compose formulas. Numpy inputs give numpy outputs; torch tensors stay
torch tensors on their device.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

Array = Union[np.ndarray, torch.Tensor]

SIZE_MULTIPLE = 8
"""Working sides are multiples of the VAE's downsampling factor."""
DEFAULT_MAX_SIZE = 960
"""Released `max_img_size` of run_diffueraser.py."""
BLUR_KERNEL = 21
"""Side of the Gaussian that softens the compose mask (released `GaussianBlur(mask, (21, 21), 0)`)."""
BLUR_FRACTION_BITS = 8
"""cv2 quantizes 8-bit Gaussian kernels to 1/256 (its `ufixedpoint16`)."""
MASK_ON = 255
"""Value of a hole pixel in the released uint8 masks."""
CHUNK_BYTES = 64 << 20
"""Whole-video resize and compose work on chunks of frames whose largest temporary is about this
size, so their memory does not grow with the video; results do not depend on it."""


# ---------------------------------------------------------------------------- size


def working_size(height: int, width: int, max_size: int = DEFAULT_MAX_SIZE) -> tuple[int, int]:
    """(h, w) the method runs at: released `read_video` sizing, without its refusals.

    Longer side above `max_size`: both sides are divided by longer/max_size and truncated; then
    both are floored to a multiple of 8. The released code refuses a longer side under 256 px;
    we keep any size, never below 8 px.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    longer = max(height, width)
    if longer > max_size:
        ratio = longer / max_size
        height, width = int(height / ratio), int(width / ratio)
    return _floor_multiple(height), _floor_multiple(width)


def _floor_multiple(side: int) -> int:
    return max(SIZE_MULTIPLE, side - side % SIZE_MULTIPLE)


def resize_frames(frames: Array, size: tuple[int, int]) -> Array:
    """uint8 frames [T, H, W, 3] resized to size (h, w) with antialiased bicubic.

    The released code resizes with PIL's default filter (bicubic, antialiased when shrinking);
    torch's uint8 antialiased bicubic is PIL's algorithm up to fixed-point rounding: at most 2
    levels apart on 0.4% (footage) to 1% (noise) of the values, and about 13x faster. Runs on
    the CPU, where torch implements it for uint8.
    """
    x, as_numpy = _to_torch(frames)
    if x.dtype != torch.uint8:
        raise TypeError(f"resize_frames expects uint8 frames, got {x.dtype}")
    if tuple(x.shape[1:3]) == tuple(size):
        return _back(x.clone(), as_numpy)
    device, (h, w) = x.device, size
    out = torch.empty((x.shape[0], h, w, x.shape[3]), dtype=torch.uint8)
    # A chunk of frames at a time: each frame is resized on its own, so this is the whole-video call.
    # The frames go in channels-last as they are (no NCHW copy): torch's uint8 kernel gives the
    # same values for both layouts and is several times faster on this one.
    step = _chunk_frames(x.shape[1] * max(x.shape[2], w) * x.shape[3])
    for start in range(0, x.shape[0], step):
        nchw = x[start:start + step].to("cpu").permute(0, 3, 1, 2)
        chunk = F.interpolate(nchw, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        out[start:start + step] = chunk.permute(0, 2, 3, 1)
    return _back(out.to(device), as_numpy)


def resize_masks(masks: Array, size: tuple[int, int]) -> Array:
    """Bool masks [T, H, W] (or [H, W]) resized to (h, w) with PIL's NEAREST rule, as released.

    Output pixel i takes source pixel floor((i + 0.5) · in/out).
    """
    m, as_numpy = _to_torch(masks)
    m = _binarize(m)
    h, w = size
    if tuple(m.shape[-2:]) == (h, w):
        return _back(m.clone(), as_numpy)
    rows = _nearest_index(m.shape[-2], h, m.device)
    cols = _nearest_index(m.shape[-1], w, m.device)
    return _back(m.index_select(-2, rows).index_select(-1, cols), as_numpy)


def _nearest_index(src: int, dst: int, device: torch.device) -> torch.Tensor:
    idx = ((torch.arange(dst, dtype=torch.float64) + 0.5) * (src / dst)).floor().long()
    return idx.clamp_(0, src - 1).to(device)


# ---------------------------------------------------------------------------- DiffuEraser masks


def dilate_masks(masks: Array, iterations: int) -> Array:
    """Released DiffuEraser mask: binarize (> 0), erode once 3x3, dilate 3x3 `iterations` times.

    Same as `cv2.erode`/`cv2.dilate` with a 3x3 rectangle and cv2's default border (pixels
    outside the frame never limit an erosion nor feed a dilation). Bool, the input's shape.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    m, as_numpy = _to_torch(masks)
    m = _binarize(m)
    m = _square_morph(m, 1, erode=True)
    m = _square_morph(m, iterations, erode=False)
    return _back(m, as_numpy)


def masked_frames(frames: Array, masks: Array) -> Array:
    """Frames with the holes painted black: released `uint8(frame · (1 − mask/255))` for 0/255 masks."""
    f, as_numpy = _to_torch(frames)
    m, _ = _to_torch(masks)
    m = _binarize(m).to(f.device)
    return _back(f.masked_fill(m[..., None], 0), as_numpy)


def _square_morph(m: torch.Tensor, radius: int, erode: bool) -> torch.Tensor:
    """(2·radius+1)² square min (erode) or max (dilate), separable; outside the frame is neutral."""
    for dim in (-1, -2):
        m = _window_reduce(m, radius, dim, erode)
    return m


def _window_reduce(m: torch.Tensor, radius: int, dim: int, erode: bool) -> torch.Tensor:
    """AND (erode) or OR (dilate) of each pixel with its neighbours within `radius` along `dim`."""
    out = m.clone()
    n = m.shape[dim]
    for s in range(1, min(radius, n - 1) + 1):
        a, b = out.narrow(dim, s, n - s), m.narrow(dim, 0, n - s)
        c, d = out.narrow(dim, 0, n - s), m.narrow(dim, s, n - s)
        if erode:
            a &= b
            c &= d
        else:
            a |= b
            c |= d
    return out


# ---------------------------------------------------------------------------- ProPainter masks


def propainter_masks(masks: Array, iterations: int) -> Array:
    """ProPainter's mask: `scipy.ndimage.binary_dilation` with its default cross, `iterations` times.

    With 0 iterations the released code thresholds at 0.1, which on integer masks is > 0.
    No erosion. Bool, the input's shape.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    m, as_numpy = _to_torch(masks)
    m = _binarize(m)
    for _ in range(iterations):
        m = _window_reduce(m, 1, -1, erode=False) | _window_reduce(m, 1, -2, erode=False)
    return _back(m, as_numpy)


# ---------------------------------------------------------------------------- blur and compose


def gaussian_blur_u8(images: Array, ksize: int = BLUR_KERNEL) -> Array:
    """cv2.GaussianBlur(img, (ksize, ksize), 0) of uint8 images [T, H, W], bit-exact.

    cv2 blurs 8-bit images in fixed point: the kernel is quantized to 1/256 (error diffusion, so
    it sums to exactly 1), rows then columns are summed in integers, and the result is rounded;
    borders are BORDER_REFLECT_101. Integer arithmetic here, so every device agrees. Only the
    box around the nonzero pixels (grown by the kernel radius) is computed: the rest is 0.
    """
    x, as_numpy = _to_torch(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"gaussian_blur_u8 expects uint8, got {x.dtype}")
    taps = _cv2_fixed_point_gaussian(ksize)
    out = torch.zeros_like(x)
    nonzero = x != 0
    if not bool(nonzero.any()):
        return _back(out, as_numpy)
    anywhere = nonzero.reshape(-1, *x.shape[-2:]).any(0)
    rows = _grown_span(anywhere.any(1), ksize // 2)
    cols = _grown_span(anywhere.any(0), ksize // 2)
    acc = _separable_pass(x.to(torch.int32), taps, -1, cols)
    acc = _separable_pass(acc, taps, -2, rows)
    shift = 2 * BLUR_FRACTION_BITS
    out[..., rows[0]:rows[1], cols[0]:cols[1]] = ((acc + (1 << (shift - 1))) >> shift).clamp_(0, 255)
    return _back(out, as_numpy)


def _grown_span(occupied: torch.Tensor, radius: int) -> tuple[int, int]:
    """[first, last + 1) of the True entries, grown by radius and clipped to the axis."""
    where = occupied.nonzero()
    first, last = int(where[0]), int(where[-1])
    return max(0, first - radius), min(occupied.numel(), last + 1 + radius)


def blend_weights(masks: Array) -> Array:
    """Released compose weight `1 − (1 − m)(1 − blur(m)/255)` in float64, m the 0/1 dilated mask."""
    return _blend_lookup(masks, _BLEND_FLOAT_LUT)


def blend_masks(masks: Array) -> Array:
    """Released stored compose mask: `uint8(blend_weights · 255)` (truncation), uint8 [T, H, W]."""
    return _blend_lookup(masks, _BLEND_U8_LUT)


def blend_box(hole: Array, blended: bool = True) -> Optional[tuple[slice, slice, Array]]:
    """Where one frame's compose acts and its uint8 blend there: (rows, cols, blend[rows, cols]).

    `hole` is one frame's dilated mask [H, W]. The blend is `blend_masks(hole)` (blended) or the
    hard 0/255 hole; it is 0 outside the box, where compose gives the original frame, so a
    caller pastes the box only. Computed on the box (the hole's bounds grown by the blur radius),
    so a small hole in a large frame costs little. None when the hole is empty.
    """
    m, as_numpy = _to_torch(hole)
    m = _binarize(m)
    if m.dim() != 2:
        raise ValueError(f"blend_box takes one frame's mask [H, W], got shape {tuple(m.shape)}")
    region = _blend_region(m, _BLEND_U8_LUT if blended else None)
    if region is None:
        return None
    rows, cols, values = region
    return rows, cols, _back(values, as_numpy)


def compose(generated: Array, original: Array, blend: Array) -> Array:
    """Paste generated frames into the originals: released `uint8(g·m + o·(1 − m))`, m = blend/255.

    float32 as released, a chunk of frames at a time (the float temporaries stay near
    CHUNK_BYTES whatever the video's length). Where blend is 0 the output is the original, bit
    for bit; where it is 255 it is the generated frame. Frames [..., H, W, 3] (one frame or a
    video, or a box of them); `blend` [..., H, W] is the uint8 mask of `blend_masks` (or 0/255
    for a hard paste).
    """
    g, as_numpy = _to_torch(generated)
    o, _ = _to_torch(original)
    b, _ = _to_torch(blend)
    o, b = o.to(g.device), b.to(g.device)
    if g.dim() < 3 or o.shape != g.shape or b.shape != g.shape[:-1]:
        raise ValueError(f"compose takes frames [..., H, W, 3] of one shape and a blend [..., H, W], got "
                         f"{tuple(g.shape)}, {tuple(o.shape)} and {tuple(b.shape)}")
    # Looked up rather than divided: CUDA turns a division by a scalar into a reciprocal product.
    weight_lut = torch.from_numpy(_COMPOSE_LUT).to(g.device)
    keep_lut = torch.from_numpy(_COMPOSE_KEEP_LUT).to(g.device)
    out = torch.empty(g.shape, dtype=torch.uint8, device=g.device)
    g3, o3, b2, out3 = (x.reshape(-1, *x.shape[-3:]) for x in (g, o, b[..., None], out))
    step = _chunk_frames(g3[0].numel() * 4)
    for start in range(0, len(g3), step):
        part = slice(start, start + step)
        index = b2[part].long()
        mixed = g3[part].to(torch.float32) * weight_lut[index] + o3[part].to(torch.float32) * keep_lut[index]
        out3[part] = mixed.to(torch.uint8)
    return _back(out, as_numpy)


def _blend_lookup(masks: Array, table: np.ndarray) -> Array:
    """The table's entry per pixel of each frame's blur (holes: the last entry, weight exactly 1),
    computed frame by frame on each frame's box; 0 (the entry of blur 0) elsewhere."""
    m, as_numpy = _to_torch(masks)
    m = _binarize(m)
    out = torch.zeros(m.shape, dtype=torch.from_numpy(table).dtype, device=m.device)
    for frame, target in zip(m.reshape(-1, *m.shape[-2:]), out.view(-1, *m.shape[-2:])):
        region = _blend_region(frame, table)
        if region is not None:
            rows, cols, values = region
            target[rows, cols] = values
    return _back(out, as_numpy)


def _blend_region(m: torch.Tensor, table: Optional[np.ndarray]) -> Optional[tuple[slice, slice, torch.Tensor]]:
    """One bool frame's box and the table's blend values there (table None: the hard 0/255 hole).

    The blur is taken on the hole's bounds grown by twice the blur radius: every output pixel of
    the box (bounds grown once) then reads only pixels of that crop, and where the crop meets the
    frame's border cv2's reflection is the same, so the values are the whole frame's exactly.
    """
    rows_any, cols_any = m.any(1), m.any(0)
    if not bool(rows_any.any()):
        return None
    if table is None:
        (r0, r1), (c0, c1) = _grown_span(rows_any, 0), _grown_span(cols_any, 0)
        return slice(r0, r1), slice(c0, c1), m[r0:r1, c0:c1].to(torch.uint8) * MASK_ON
    radius = BLUR_KERNEL // 2
    (r0, r1), (c0, c1) = _grown_span(rows_any, radius), _grown_span(cols_any, radius)
    (q0, q1), (p0, p1) = _grown_span(rows_any, 2 * radius), _grown_span(cols_any, 2 * radius)
    crop = m[q0:q1, p0:p1]
    blurred = gaussian_blur_u8(crop.to(torch.uint8) * MASK_ON)[r0 - q0:r1 - q0, c0 - p0:c1 - p0]
    lut = torch.from_numpy(table).to(m.device)
    values = torch.where(crop[r0 - q0:r1 - q0, c0 - p0:c1 - p0], lut[-1], lut[blurred.long()])
    return slice(r0, r1), slice(c0, c1), values


def _blend_tables() -> tuple[np.ndarray, np.ndarray]:
    """The released float64 blend of a non-hole pixel for each blur value 0..255, and its uint8
    truncation; a hole gives 1 − 0·(…) = 1, which is also entry 255."""
    blur = np.arange(256, dtype=np.float64)
    kept = 0.0  # mask/255 of a pixel outside the hole
    weight = 1 - (1 - kept) * (1 - blur / 255.0)
    return weight, (weight * 255).astype(np.uint8)


_BLEND_FLOAT_LUT, _BLEND_U8_LUT = _blend_tables()
_COMPOSE_LUT = np.arange(256, dtype=np.float32) / np.float32(255)
_COMPOSE_KEEP_LUT = np.float32(1) - _COMPOSE_LUT


def _cv2_fixed_point_gaussian(ksize: int) -> list[int]:
    """cv2's 8-bit Gaussian taps (sigma from ksize as cv2 does for sigma = 0), summing to 256."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize must be odd and positive, got {ksize}")
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    half = ksize // 2
    weights = [math.exp(-((i - half) ** 2) / (2 * sigma * sigma)) for i in range(ksize)]
    total = sum(weights[:half]) * 2 + 1.0
    one = 1 << BLUR_FRACTION_BITS
    taps = [0] * ksize
    err = 0.0
    for i in range(half):  # error diffusion from the outside in, mirrored
        value = weights[i] / total * one + err
        taps[i] = taps[ksize - 1 - i] = round(value)
        err = value - taps[i]
    taps[half] = one - 2 * sum(taps[:half])
    return taps


def _separable_pass(x: torch.Tensor, taps: list[int], dim: int, span: tuple[int, int]) -> torch.Tensor:
    """Integer 1-D correlation along `dim` with BORDER_REFLECT_101, outputs span[0]:span[1] only."""
    n, half = x.shape[dim], len(taps) // 2
    lo, hi = span
    index = torch.tensor([_reflect101(i, n) for i in range(lo - half, hi + half)], device=x.device)
    padded = x.index_select(dim, index)
    out = padded.narrow(dim, half, hi - lo) * taps[half]
    for k in range(half):  # symmetric taps: pair the mirrored neighbours
        if taps[k]:
            out += (padded.narrow(dim, k, hi - lo) + padded.narrow(dim, 2 * half - k, hi - lo)) * taps[k]
    return out


def _reflect101(i: int, n: int) -> int:
    """cv2.borderInterpolate(i, n, BORDER_REFLECT_101): gfedcb|abcdefgh|gfedcba, repeated."""
    if n == 1:
        return 0
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * n - 2 - i
    return i


# ---------------------------------------------------------------------------- numpy/torch


def _chunk_frames(frame_bytes: int) -> int:
    """Frames per chunk so that a chunk's temporary of `frame_bytes` per frame stays near CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // max(1, frame_bytes))


def _to_torch(x: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy()), True


def _back(x: torch.Tensor, as_numpy: bool) -> Array:
    return x.cpu().numpy() if as_numpy else x


def _binarize(m: torch.Tensor) -> torch.Tensor:
    """Bool masks of the same shape ([T, H, W] or [H, W]); nonzero = hole."""
    if m.dim() not in (2, 3):
        raise ValueError(f"masks must be [T, H, W] or [H, W], got shape {tuple(m.shape)}")
    return m if m.dtype == torch.bool else m > 0
