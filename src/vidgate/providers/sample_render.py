"""Render clearly marked placeholder ("sample") videos without any model.

Used by the built-in sample provider so the whole gateway can be exercised end to end. Every
frame carries a banner with a label and the prompt, so a sample can never be mistaken for a real
generation. Text is drawn once with Pillow; per frame only cheap numpy slicing and blending
happens, which keeps a 10 s 720p clip well within a few seconds on two cores.
"""

import contextlib
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["RenderCancelled", "RenderSpec", "render_sample_video"]

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]

MIN_SIDE = 16  # smaller frames cannot hold the sample marking
MAX_SIDE = 4096
MAX_FPS = 120
# x264 speed/size trade-off: fast enough for 720p at several times real time on two cores.
X264_PRESET = "superfast"
X264_CRF = "23"

ACCENT = (255, 196, 0)
TEXT = (255, 255, 255)
MUTED = (210, 210, 210)
PROMPT_LIMIT = 2000  # characters considered for wrapping; the rest is cut anyway
PAN_ZOOM = 1.08  # input images are scaled this much past "cover" to leave room for the pan
GRADIENT_CYCLE_S = 16.0  # seconds for the background gradient to shift by one full period


class RenderCancelled(Exception):
    """The render was stopped because ``should_stop()`` returned True."""


@dataclass(frozen=True, kw_only=True)
class RenderSpec:
    prompt: str
    width: int
    height: int
    seconds: float
    fps: int = 24
    image: Path | None = None  # an image file, decoded as the background
    label: str = "SAMPLE"


def render_sample_video(
    spec: RenderSpec,
    out_path: Path,
    *,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Write an H.264 MP4 sample clip for ``spec`` to ``out_path``.

    The file appears at ``out_path`` only once complete (written next to it, then renamed).
    Raises ``ValueError`` for an invalid spec and ``RenderCancelled`` if ``should_stop`` fires.
    """
    frame_count = _validate(spec)
    width, height = spec.width, spec.height
    background = (
        _ImageBackground(_decode_image(spec.image, width=width, height=height), width, height)
        if spec.image is not None
        else _GradientBackground(width, height, spec.fps)
    )
    overlay = _Overlay(spec, frame_count)

    out_path = Path(out_path)
    tmp_path = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.part")
    container = None
    try:
        container = av.open(
            str(tmp_path), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        container.metadata["comment"] = "vidgate sample render (not a generated video)"
        stream = container.add_stream(
            "libx264", rate=spec.fps, options={"preset": X264_PRESET, "crf": X264_CRF}
        )
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        time_base = Fraction(1, spec.fps)
        stream.codec_context.time_base = time_base

        buf: U8 = np.empty((height, width, 3), dtype=np.uint8)
        report_every = max(1, frame_count // 100)
        for index in range(frame_count):
            if should_stop is not None and should_stop():
                raise RenderCancelled("render cancelled")
            background.draw(buf, index, frame_count)
            overlay.draw(buf, index)
            frame = av.VideoFrame.from_ndarray(buf, format="rgb24")
            frame.pts = index
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            if on_progress is not None and (index + 1) % report_every == 0:
                # Leave headroom for flushing/finalising; 1.0 is sent once the file is in place.
                on_progress(min(0.99, (index + 1) / frame_count))
        if should_stop is not None and should_stop():
            raise RenderCancelled("render cancelled")
        container.mux(stream.encode(None))
        container.close()
        container = None
        os.replace(tmp_path, out_path)
    except BaseException:
        if container is not None:
            # Already failing: a close error must not hide the original one.
            with contextlib.suppress(Exception):
                container.close()
        tmp_path.unlink(missing_ok=True)
        raise
    if on_progress is not None:
        on_progress(1.0)


def _validate(spec: RenderSpec) -> int:
    for name, value in (("width", spec.width), ("height", spec.height)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if value % 2:
            raise ValueError(f"{name} must be an even number (H.264 4:2:0), got {value}")
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be between {MIN_SIDE} and {MAX_SIDE}, got {value}")
    if not isinstance(spec.fps, int) or isinstance(spec.fps, bool) or not 1 <= spec.fps <= MAX_FPS:
        raise ValueError(f"fps must be an integer between 1 and {MAX_FPS}, got {spec.fps!r}")
    if not math.isfinite(spec.seconds) or spec.seconds <= 0:
        raise ValueError(f"seconds must be a positive number, got {spec.seconds!r}")
    frame_count = round(spec.seconds * spec.fps)
    if frame_count < 1:
        raise ValueError(f"seconds={spec.seconds} is shorter than one frame at {spec.fps} fps")
    return frame_count


# --- backgrounds -----------------------------------------------------------------------------


def _decode_image(path: Path, *, width: int, height: int) -> Image.Image:
    """Decode a user image file to an upright RGB image scaled to cover the pan area."""
    try:
        with Image.open(path) as opened:
            # JPEG can decode at reduced scale; ask for enough pixels for either orientation.
            side = math.ceil(max(width, height) * PAN_ZOOM)
            opened.draft("RGB", (side, side))
            img = ImageOps.exif_transpose(opened)
            img.load()
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, bomb errors...)
        raise ValueError(f"input image could not be decoded: {exc}") from exc
    if img.width < 1 or img.height < 1:
        raise ValueError("input image could not be decoded: image is empty")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # Show transparent areas as dark grey rather than whatever colour the pixels hold.
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (32, 32, 36, 255))
        img = Image.alpha_composite(base, rgba)
    rgb = img.convert("RGB")

    # Cover (width, height) * PAN_ZOOM with a centred crop of the source.
    target_w = max(width, round(width * PAN_ZOOM))
    target_h = max(height, round(height * PAN_ZOOM))
    scale = max(target_w / rgb.width, target_h / rgb.height)
    crop_w, crop_h = target_w / scale, target_h / scale
    left, top = (rgb.width - crop_w) / 2, (rgb.height - crop_h) / 2
    return rgb.resize(
        (target_w, target_h),
        Image.Resampling.LANCZOS,
        box=(left, top, left + crop_w, top + crop_h),
    )


class _ImageBackground:
    """Slow diagonal pan across the (slightly oversized) input image."""

    def __init__(self, img: Image.Image, width: int, height: int) -> None:
        self._pixels: U8 = np.asarray(img, dtype=np.uint8)
        self._width = width
        self._height = height
        self._room_x = self._pixels.shape[1] - width
        self._room_y = self._pixels.shape[0] - height

    def draw(self, buf: U8, index: int, count: int) -> None:
        t = index / max(1, count - 1)
        eased = t * t * (3 - 2 * t)  # smoothstep: no jolt at the start and end
        x = round(eased * self._room_x)
        y = round(eased * self._room_y)
        np.copyto(buf, self._pixels[y : y + self._height, x : x + self._width])


class _GradientBackground:
    """Diagonal colour gradient that drifts sideways; each frame is a slice of a wide tile."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        period = width
        slope = 0.6  # horizontal shift per row -> diagonal bands
        row_shift = [round(slope * y) for y in range(height)]
        span = width + period  # tile width: any offset in [0, period) fits
        lut = _palette(period)
        reps = math.ceil((span + row_shift[-1]) / period) + 1
        strip = np.tile(lut, (reps, 1))
        # Soft vertical vignette so the top banner and bottom text sit on darker ground.
        ys = (np.arange(height, dtype=np.float32) + 0.5) / height
        shade = 0.72 + 0.28 * np.sin(np.pi * ys)
        tile: U8 = np.empty((height, span, 3), dtype=np.uint8)
        for y in range(height):
            row = strip[row_shift[y] : row_shift[y] + span]
            tile[y] = (row * shade[y]).astype(np.uint8)
        self._tile = tile
        self._width = width
        self._period = period
        self._px_per_frame = period / (GRADIENT_CYCLE_S * fps)

    def draw(self, buf: U8, index: int, count: int) -> None:
        offset = int(index * self._px_per_frame) % self._period
        np.copyto(buf, self._tile[:, offset : offset + self._width])


def _palette(period: int) -> npt.NDArray[np.float32]:
    """A periodic, muted blue-violet-teal palette (cosine palette) of ``period`` entries."""
    phase = np.arange(period, dtype=np.float32)[:, None] / period
    base = np.array([0.32, 0.30, 0.48], dtype=np.float32)
    amp = np.array([0.18, 0.16, 0.20], dtype=np.float32)
    shift = np.array([0.0, 0.33, 0.67], dtype=np.float32)
    rgb = base + amp * np.cos(2 * np.pi * (phase + shift))
    out: npt.NDArray[np.float32] = np.clip(rgb * 255.0, 0, 255).astype(np.float32)
    return out


# --- overlay -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Patch:
    """A precomputed RGBA region, ready for integer alpha blending."""

    y: int
    x: int
    inv_alpha: U16  # (h, w, 1): 256 - alpha, alpha scaled to 0..256
    premul: U16  # (h, w, 3): colour * alpha
    scratch: U16  # (h, w, 3): reused per frame to avoid allocations

    @classmethod
    def from_rgba(cls, rgba: U8, *, y: int, x: int) -> "_Patch":
        alpha = rgba[:, :, 3:4].astype(np.uint16)
        alpha = alpha + (alpha >> 7)  # 255 -> 256 so opaque pixels fully replace
        premul = rgba[:, :, :3].astype(np.uint16) * alpha
        return cls(
            y=y,
            x=x,
            inv_alpha=(256 - alpha).astype(np.uint16),
            premul=premul.astype(np.uint16),
            scratch=np.empty(premul.shape, dtype=np.uint16),
        )

    def blend(self, buf: U8) -> None:
        h, w = self.premul.shape[:2]
        region = buf[self.y : self.y + h, self.x : self.x + w]
        scratch = self.scratch
        np.multiply(region, self.inv_alpha, out=scratch)
        np.add(scratch, self.premul, out=scratch)
        np.right_shift(scratch, 8, out=scratch)
        np.copyto(region, scratch, casting="unsafe")


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=max(8, size))
    if not isinstance(font, ImageFont.FreeTypeFont):  # only without FreeType support
        raise RuntimeError("Pillow was built without FreeType; cannot render sample text")
    return font


def _text_width(font: ImageFont.FreeTypeFont, text: str) -> float:
    return float(font.getlength(text))


def _longest_fitting_prefix(font: ImageFont.FreeTypeFont, text: str, max_width: float) -> int:
    """Length of the longest prefix of ``text`` no wider than ``max_width`` (binary search)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _text_width(font, text[:mid]) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fit(font: ImageFont.FreeTypeFont, text: str, max_width: float) -> str:
    """``text`` cut with an ellipsis so that it fits ``max_width``."""
    if _text_width(font, text) <= max_width:
        return text
    keep = _longest_fitting_prefix(font, text, max_width - _text_width(font, "…"))
    return text[:keep].rstrip() + "…"


def _wrap(font: ImageFont.FreeTypeFont, text: str, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap by pixel width; the last line gets an ellipsis if text is left over."""
    clean = " ".join(text.split())
    truncated = len(clean) > PROMPT_LIMIT
    lines: list[str] = []
    current = ""
    for word in clean[:PROMPT_LIMIT].split(" "):
        candidate = f"{current} {word}" if current else word
        if _text_width(font, candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        # Break words wider than a line (URLs, text without spaces) by characters.
        while _text_width(font, word) > max_width and len(lines) <= max_lines:
            cut = max(1, _longest_fitting_prefix(font, word, max_width))
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current and len(lines) <= max_lines:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        truncated = True
    if truncated and lines:
        lines[-1] = _fit(font, lines[-1] + "…", max_width)
    return lines


def _timecode(frames: int, fps: int) -> str:
    centis = round(frames * 100 / fps)
    minutes, centis = divmod(centis, 6000)
    return f"{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}"


class _Overlay:
    """Static banner + prompt box (pre-rendered once) and the moving progress bar/timecode."""

    def __init__(self, spec: RenderSpec, frame_count: int) -> None:
        w, h = spec.width, spec.height
        unit = min(w, h)
        margin = max(4, round(unit * 0.04))
        self._fps = spec.fps
        self._count = frame_count

        image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)

        # Top banner: dark band, label in the accent colour, caution-tape edge.
        banner_h = max(14, round(unit * 0.12))
        tape_h = max(2, round(unit * 0.014))
        draw.rectangle((0, 0, w, banner_h - 1), fill=(0, 0, 0, 185))
        draw.rectangle((0, banner_h, w, banner_h + tape_h - 1), fill=(0, 0, 0, 230))
        stripe = tape_h * 2
        for x0 in range(-stripe, w + stripe, stripe * 2):
            draw.polygon(
                [
                    (x0, banner_h + tape_h),
                    (x0 + stripe, banner_h + tape_h),
                    (x0 + stripe * 2, banner_h),
                    (x0 + stripe, banner_h),
                ],
                fill=(*ACCENT, 255),
            )
        label_font = _font(round(unit * 0.06))
        label = _fit(label_font, " ".join(spec.label.split()) or "SAMPLE", w - 2 * margin)
        draw.text(
            (w / 2, banner_h / 2),
            label,
            font=label_font,
            fill=(*ACCENT, 255),
            anchor="mm",
            stroke_width=1 if label_font.size >= 24 else 0,  # faux bold; blots small text
            stroke_fill=(*ACCENT, 255),
        )

        # Bottom row: progress bar track with the timecode to its right.
        tc_font = _font(round(unit * 0.034))
        ascent, descent = tc_font.getmetrics()
        row_h = ascent + descent
        row_top = h - margin - row_h
        bar_h = max(2, round(unit * 0.012))
        bar_y = row_top + (row_h - bar_h) // 2
        total = _timecode(frame_count, spec.fps)
        self._glyphs = _Glyphs(tc_font, row_h)
        gap = margin
        suffix = f" / {total}"
        cur_w = self._glyphs.width(total)
        full_w = cur_w + math.ceil(_text_width(tc_font, suffix))
        inner = w - 2 * margin
        self._tc_x: int | None = None
        tc_w = 0
        if inner - full_w - gap >= inner * 0.3:
            tc_w = full_w
        elif inner - cur_w - gap >= inner * 0.3:
            tc_w, suffix = cur_w, ""
        if tc_w:
            self._tc_x = w - margin - tc_w
            draw.text((self._tc_x + cur_w, row_top), suffix, font=tc_font, fill=(*MUTED, 255))
            bar_x1 = self._tc_x - gap
        else:
            bar_x1 = w - margin
        self._tc_y = row_top
        self._bar = (margin, bar_y, bar_x1, bar_y + bar_h)
        if bar_x1 > margin:
            draw.rectangle((margin, bar_y, bar_x1 - 1, bar_y + bar_h - 1), fill=(255, 255, 255, 90))

        # Prompt box above the bottom row: small caption, then the wrapped prompt.
        prompt_font = _font(round(unit * 0.042))
        caption_font = _font(round(unit * 0.028))
        pad = max(3, round(unit * 0.02))
        line_h = round(prompt_font.size * 1.3)
        caption_h = round(caption_font.size * 1.4)
        box_bottom = row_top - max(3, margin // 2)
        room = box_bottom - (banner_h + tape_h + margin) - 2 * pad - caption_h
        preferred = 3 if w >= h else 6
        max_lines = max(1, min(preferred, int(room * 0.6) // max(1, line_h)))
        lines = _wrap(prompt_font, spec.prompt, w - 2 * margin - 2 * pad, max_lines)
        if not lines:
            lines = ["(empty prompt)"]
        box_top = box_bottom - 2 * pad - caption_h - line_h * len(lines)
        draw.rounded_rectangle(
            (margin, box_top, w - margin - 1, box_bottom),
            radius=pad,
            fill=(0, 0, 0, 150),
        )
        draw.text((margin + pad, box_top + pad), "PROMPT", font=caption_font, fill=(*ACCENT, 255))
        for i, line in enumerate(lines):
            y = box_top + pad + caption_h + i * line_h
            draw.text((margin + pad, y), line, font=prompt_font, fill=(*TEXT, 255))

        self._patches = _split_patches(np.asarray(image, dtype=np.uint8))

    def draw(self, buf: U8, index: int) -> None:
        for patch in self._patches:
            patch.blend(buf)
        x0, y0, x1, y1 = self._bar
        done = (index + 1) / self._count
        fill_to = x0 + round((x1 - x0) * done)
        if fill_to > x0:
            buf[y0:y1, x0:fill_to] = ACCENT
        if self._tc_x is not None:
            self._glyphs.draw(buf, _timecode(index, self._fps), x=self._tc_x, y=self._tc_y)


def _split_patches(rgba: U8) -> list[_Patch]:
    """Bounding boxes of the non-transparent row bands, so blending skips empty areas."""
    alpha = rgba[:, :, 3]
    used_rows = np.flatnonzero(alpha.any(axis=1))
    patches: list[_Patch] = []
    if used_rows.size == 0:
        return patches
    breaks = np.flatnonzero(np.diff(used_rows) > 1)
    starts = np.concatenate(([used_rows[0]], used_rows[breaks + 1]))
    ends = np.concatenate((used_rows[breaks], [used_rows[-1]])) + 1
    for y0, y1 in zip(starts.tolist(), ends.tolist(), strict=True):
        cols = np.flatnonzero(alpha[y0:y1].any(axis=0))
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        patches.append(_Patch.from_rgba(rgba[y0:y1, x0:x1], y=y0, x=x0))
    return patches


class _Glyphs:
    """Pre-rendered timecode characters; digits share one width so the text never jitters."""

    CHARS = "0123456789:."

    def __init__(self, font: ImageFont.FreeTypeFont, height: int) -> None:
        digit_w = math.ceil(max(_text_width(font, d) for d in "0123456789"))
        self._height = height
        self._advance: dict[str, int] = {}
        self._patches: dict[str, _Patch] = {}
        for ch in self.CHARS:
            cell_w = digit_w if ch.isdigit() else max(1, math.ceil(_text_width(font, ch)))
            cell = Image.new("RGBA", (cell_w, height), (*TEXT, 0))
            ImageDraw.Draw(cell).text(
                ((cell_w - _text_width(font, ch)) / 2, 0), ch, font=font, fill=(*TEXT, 255)
            )
            self._advance[ch] = cell_w
            self._patches[ch] = _Patch.from_rgba(np.asarray(cell, dtype=np.uint8), y=0, x=0)

    def width(self, text: str) -> int:
        return sum(self._advance[ch] for ch in text)

    def draw(self, buf: U8, text: str, *, x: int, y: int) -> None:
        for ch in text:
            patch = self._patches[ch]
            view = buf[y : y + self._height, x : x + self._advance[ch]]
            if view.shape[:2] == patch.premul.shape[:2]:
                patch.blend(view)
            x += self._advance[ch]
