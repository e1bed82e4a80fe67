"""core/images.py: the type comes from the bytes, the size from the header; every rule refuses."""

from __future__ import annotations

import struct

import pytest

from core.images import MAX_BYTES
from core.images import Picture
from core.images import PictureError
from core.images import check_picture
from core.images import read_header
from tests.support.pictures import jpeg
from tests.support.pictures import png
from tests.support.pictures import webp


def vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"WEBP" + b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def vp8(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    body = b"WEBP" + b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(128, 120), Picture("image/png", 128, 120)),
        (jpeg(400, 400), Picture("image/jpeg", 400, 400)),
        (webp(512, 500), Picture("image/webp", 512, 500)),
        (vp8l(300, 320), Picture("image/webp", 300, 320)),
        (vp8(200, 200), Picture("image/webp", 200, 200)),
    ],
)
def test_each_accepted_format_is_read_from_its_header(data: bytes, expected: Picture) -> None:
    assert read_header(data) == expected
    assert check_picture(data) == expected


def test_a_jpeg_with_segments_and_fill_bytes_before_its_frame_is_read() -> None:
    base = jpeg(256, 240)
    comment = b"\xff\xfe" + struct.pack(">H", 7) + b"hello"
    data = base[:2] + comment + b"\xff" + base[2:]  # a COM segment, then a fill byte
    assert read_header(data) == Picture("image/jpeg", 256, 240)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"GIF89a" + b"\x00" * 40, "is not a PNG, JPEG or WebP picture"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "is not a PNG, JPEG or WebP picture"),
        (png(100, 100)[:20], "This PNG's header could not be read"),
        (b"\xff\xd8\xff\xd9", "This JPEG's header could not be read"),
        (b"RIFF\x04\x00\x00\x00WEBPVP9 ", "This WebP's header could not be read"),
        (png(64, 64), "is 64 x 64 pixels; it needs at least 96 x 96"),
        (jpeg(2000, 2000), "is 2000 x 2000 pixels; it may be at most 1024 x 1024"),
        (webp(400, 200), "is 400 x 200 pixels; crop it to a square"),
        (png(100, 126), "crop it to a square"),
        (png(128, 128) + b"\x00" * MAX_BYTES, "The picture is 1025 KB; the limit is 1 MB"),
        (b"\x00" * (3 * MAX_BYTES), "The picture is 3.0 MB; the limit is 1 MB"),
    ],
)
def test_every_rule_refuses_with_words_for_the_student(data: bytes, message: str) -> None:
    with pytest.raises(PictureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_picture(data)


def test_the_limits_themselves_are_allowed() -> None:
    assert check_picture(png(96, 96)).width == 96
    assert check_picture(jpeg(1024, 1024)).height == 1024
    assert check_picture(png(100, 125)).height == 125  # exactly 5:4
    exact = png(96, 96)
    assert check_picture(exact + b"\x00" * (MAX_BYTES - len(exact)))  # 1 MB exactly
