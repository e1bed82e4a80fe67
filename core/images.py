"""Profile pictures: read a PNG, JPEG or WebP header from its bytes and check the upload rules.

The type is decided by the file's magic bytes, never by its name or the browser's content type,
and the size from the header alone (no image library: Pillow is not a dependency). Messages are
meant for the student, next to the upload field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_BYTES = 1024 * 1024
MIN_SIDE = 96
MAX_SIDE = 1024
# "Square-ish": mail clients show the picture in a circle, so the long side may exceed the
# short one by a quarter at most (5:4) before faces get cut off.
MAX_ASPECT = 1.25
TYPES = ("image/png", "image/jpeg", "image/webp")

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the size); C4, C8 and CC are other segments.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers without a length field: TEM and the restart markers.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


class PictureError(ValueError):
    """The upload cannot be a profile picture; the message says why, in plain words."""


@dataclass(frozen=True)
class Picture:
    """What the header says: the real content type and the size in pixels."""

    content_type: str
    width: int
    height: int


def _size(size: int) -> str:
    # Just over the limit, "1.0 MB" would read as allowed: say it in KB there.
    if size < 1.1 * MAX_BYTES:
        return f"{-(-size // 1024)} KB"
    return f"{size / MAX_BYTES:.1f} MB"


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise PictureError("This PNG's header could not be read; save the picture again.")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the pixels start: no size was given
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise PictureError("This JPEG's header could not be read; save the picture again.")


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise PictureError("This WebP's header could not be read; save the picture again.")


def read_header(data: bytes) -> Picture:
    """Return the picture's real type and size, or raise PictureError if it is none we accept."""
    if data.startswith(_PNG):
        return Picture("image/png", *_png(data))
    if data.startswith(b"\xff\xd8\xff"):
        return Picture("image/jpeg", *_jpeg(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Picture("image/webp", *_webp(data))
    raise PictureError(
        "This file is not a PNG, JPEG or WebP picture (we check its content, not its name)."
    )


def check_picture(data: bytes) -> Picture:
    """Return the picture if it obeys every rule (type, at most 1 MB, 96-1024 px, square-ish)."""
    if not data:
        raise PictureError("The file is empty; choose a picture.")
    if len(data) > MAX_BYTES:
        raise PictureError(
            f"The picture is {_size(len(data))}; the limit is 1 MB (1024 KB). Save it smaller "
            "(a 400 x 400 JPEG is about 50 KB)."
        )
    picture = read_header(data)
    width, height = picture.width, picture.height
    size = f"{width} x {height} pixels"
    if min(width, height) < MIN_SIDE:
        raise PictureError(f"The picture is {size}; it needs at least {MIN_SIDE} x {MIN_SIDE}.")
    if max(width, height) > MAX_SIDE:
        raise PictureError(f"The picture is {size}; it may be at most {MAX_SIDE} x {MAX_SIDE}.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise PictureError(f"The picture is {size}; crop it to a square (at most 5:4).")
    return picture
