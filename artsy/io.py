"""Safe file reading and EXIF-aware image decoding to a square RGB array.

:func:`read_file` reads a discovered file (local path or URI) without ever blocking on a FIFO or
device and turns every failure into an ``OSError`` whose text is the reason written to the table.

Every decoder in artsy (training and the batch job) goes through :func:`decode_image`, so the
pixels a model was trained on and the pixels it labels are made the same way.

Rules
-----
- Pillow's decompression-bomb limit stays on: images over ``2 * Image.MAX_IMAGE_PIXELS`` are refused
  at ``open`` before any pixel buffer is allocated (between 1x and 2x Pillow only warns; we decode).
- EXIF orientation is applied, so a phone photo is seen upright.
- The first frame of an animation / the first page of a multi-page file is used.
- Alpha (RGBA, LA, palette with ``tRNS``) is composited on white; 16-bit and 32-bit images are
  scaled to 8 bits (not clipped); CMYK is converted by Pillow (no ICC).
- JPEGs are decoded in draft mode (DCT scaling to at least twice the target side), which is 2x
  faster and changes the 100x100 result by a small, tested amount.
- A file that fails is never decoded again from the same Pillow object.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import warnings
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: URI schemes read through :mod:`pyarrow.fs`.
URI_SCHEMES: tuple[str, ...] = ("s3", "gs", "gcs", "file", "hdfs", "abfs", "abfss")

#: Minimum ratio of draft size to target size for JPEG DCT scaling.
DRAFT_OVERSAMPLE = 2


class ImageDecodeError(ValueError):
    """An image could not be decoded; ``str(error)`` is the reason written to the output table."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image.

    Attributes
    ----------
    pixels : (size, size, 3) uint8 ndarray
        The upright image, resized (aspect not kept) to the target square.
    width, height : int
        Size of the upright original (after EXIF orientation), in pixels.
    crop : (crop, crop, 3) uint8 ndarray or None
        The centre square of the upright image, its shorter side resized to ``crop`` (aspect
        kept): the pretrained backbone's input. ``None`` unless asked for.
    """

    pixels: np.ndarray
    width: int
    height: int
    crop: np.ndarray | None = None


def decode_image(data: bytes, *, size: int = 100, draft: bool = True,
                 crop: int | None = None) -> DecodedImage:
    """Decode encoded image bytes into a ``(size, size, 3)`` uint8 RGB array.

    Parameters
    ----------
    data : bytes
        The encoded file content (any format Pillow reads).
    size : int, default=100
        Side of the output square.
    draft : bool, default=True
        Let JPEGs decode at a reduced DCT scale that is still ``>= 2 * size`` (and ``>= crop``).
    crop : int or None, default=None
        Also return the centre ``crop x crop`` square (aspect kept) from the same decode.

    Returns
    -------
    DecodedImage

    Raises
    ------
    ImageDecodeError
        With a short reason: ``empty file``, ``not an image: ...``, ``decompression bomb: ...``,
        ``corrupt image data: ...``.
    """
    if size < 1 or (crop is not None and crop < 1):
        raise ValueError(f"size and crop must be >= 1, got {size} and {crop}")
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice that Pillow only warns; we accept such images.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # palette transparency notes
            with Image.open(io.BytesIO(data)) as image:
                return _decode_opened(image, size=size, draft=draft, crop=crop)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image: format not recognised") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, ImageDecodeError):
            raise
        raise ImageDecodeError(f"corrupt image data: {error}") from None


def _decode_opened(image: Image.Image, *, size: int, draft: bool,
                   crop: int | None) -> DecodedImage:
    orientation = image.getexif().get(ImageOps.ExifTags.Base.Orientation, 1)
    width, height = image.size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if draft and image.format == "JPEG":
        target = max(DRAFT_OVERSAMPLE * size, crop or 0)
        image.draft(image.mode, (target, target))
    image.load()
    image = ImageOps.exif_transpose(image)
    rgb = _to_rgb(image)
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.asarray(resized, dtype=np.uint8)
    square = None if crop is None else np.asarray(centre_crop(rgb, crop), dtype=np.uint8)
    return DecodedImage(pixels=pixels, width=width, height=height, crop=square)


def centre_crop(image: Image.Image, side: int) -> Image.Image:
    """The centre square of ``image`` (side = its shorter side), resized to ``side x side``."""
    width, height = image.size
    square = min(width, height)
    left, top = (width - square) / 2, (height - square) / 2
    return image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=3.0,
                        box=(left, top, left + square, top + square))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB faithfully (alpha on white, high bit depths scaled)."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = Image.fromarray(_scale_to_uint8(np.asarray(image)), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a 16/32-bit integer or float array to uint8 by its type's range (not by clipping)."""
    if np.issubdtype(values.dtype, np.floating):
        top = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
        scaled = np.nan_to_num(values.astype(np.float64)) / top * 255.0
    else:
        top = 65535.0 if int(values.max(initial=0)) <= 65535 else float(np.iinfo(np.int32).max)
        scaled = values.astype(np.float64) / top * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def is_uri(path: str) -> bool:
    """Return whether ``path`` is a URI read through :mod:`pyarrow.fs` (``s3://``, ``gs://``)."""
    return urlparse(path).scheme.lower() in URI_SCHEMES and "://" in path


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a local file's bytes, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_file(location: bytes) -> bytes:
    """Return the bytes of a discovered file (local OS path bytes or a UTF-8 URI).

    Raises
    ------
    OSError
        With the reason written to the table (dangling symlink, deleted, permission denied, ...).
    """
    text = location.decode("utf-8", errors="surrogateescape")
    if is_uri(text):
        return _read_uri(text)
    try:
        return _read_local(location)
    except OSError as error:
        if error.errno is None:  # one of our reasons above
            raise
        raise OSError(f"unreadable: {error.strerror}") from None


def _read_local(location: bytes) -> bytes:
    """Read a local file without ever blocking on a FIFO or device; raise OSError with a reason."""
    try:
        descriptor = os.open(location, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        if os.path.islink(location):
            raise OSError("dangling symlink: target does not exist") from None
        raise OSError("file not found: deleted after discovery") from None
    except PermissionError:
        raise OSError("unreadable: permission denied") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError("not a regular file")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(descriptor)


def _read_uri(uri: str) -> bytes:
    import pyarrow.fs

    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise OSError("file not found: deleted after discovery") from None
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        raise OSError(f"unreadable: {' '.join(str(error).split())}") from None
