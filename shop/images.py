"""Product pictures: checked, scaled down and stored under content-hashed names.

What the owner uploads is never served as it came: it is opened with Pillow
(a file that is not a picture, or a decompression bomb, is refused), turned
upright (EXIF orientation), stripped of its metadata (a phone photo carries
GPS), scaled to at most ``MAIN_MAX_SIDE`` px and saved as WebP, with a
``THUMB_SIZE`` thumbnail cropped for the catalogue cards. Each file is named
by the SHA-256 of its bytes, so its address changes whenever its content does:
shop.media can tell browsers and proxies to keep it for a year.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps, UnidentifiedImageError

# Largest side of the stored picture (the product page shows it at most ~600
# css px wide: 1200 covers 2x screens).
MAIN_MAX_SIDE = 1200
# The catalogue card's thumbnail: 4:3, cropped around the centre.
THUMB_SIZE = (480, 360)
# What an upload may be. Larger files are refused before Pillow decodes them,
# and pictures of more pixels than this (40 MP: a big camera) are refused
# before they are scaled.
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
WEBP_QUALITY = 82
FOLDER = "products"


class ImageRejected(ValidationError):
    """The upload is not a picture the shop takes; ``message`` says why in the owner's words."""


@dataclass(frozen=True)
class StoredImage:
    name: str  # storage name of the main picture
    thumb_name: str
    width: int
    height: int


def _open_checked(data: bytes) -> Image.Image:
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRejected(_("This picture is larger than %(limit)s. Save it smaller and upload it again.")
                            % {"limit": filesizeformat(MAX_UPLOAD_BYTES)}, code="image_too_large")
    try:
        probe = Image.open(io.BytesIO(data))
        probe.verify()  # the whole file is read: a truncated or forged one fails here
        image = Image.open(io.BytesIO(data))  # verify() leaves the first one unusable
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ImageRejected(_("This file is not a picture the shop can read. Upload a JPEG, PNG, WebP or GIF."),
                            code="image_invalid") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected(_("This file is not a picture the shop can read. Upload a JPEG, PNG, WebP or GIF."),
                            code="image_invalid")
    if image.width * image.height > MAX_PIXELS:
        raise ImageRejected(_("This picture has too many pixels (at most %(mp)s million). Scale it down and upload "
                              "it again.") % {"mp": MAX_PIXELS // 1_000_000}, code="image_too_many_pixels")
    return image


def image_check(*, data: bytes) -> None:
    """Raise ImageRejected unless ``data`` is a picture ``product_image_store`` takes."""
    _open_checked(data)


def _webp(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # No exif, no icc_profile passed on: nothing of the original file's metadata.
    image.save(out, format="WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()


def _store(data: bytes, suffix: str = "") -> str:
    """Write ``data`` under its hash, once: the same picture uploaded twice is one file."""
    name = f"{FOLDER}/{hashlib.sha256(data).hexdigest()[:32]}{suffix}.webp"
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        assert saved == name, (saved, name)  # a storage that renames would break the hashed address
    return name


def product_image_store(*, data: bytes) -> StoredImage:
    """Check, scale and store an uploaded picture; the names to put on the product.

    Raises ImageRejected (a ValidationError: forms show its message) for
    anything that is not a JPEG, PNG, WebP or GIF within the limits."""
    image = _open_checked(data)
    image.seek(0)  # an animated GIF or WebP: its first frame
    image = ImageOps.exif_transpose(image)
    keep_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if keep_alpha else "RGB")
    main = image.copy()
    main.thumbnail((MAIN_MAX_SIDE, MAIN_MAX_SIDE), Image.Resampling.LANCZOS)
    thumb = ImageOps.fit(image, THUMB_SIZE, Image.Resampling.LANCZOS)
    return StoredImage(name=_store(_webp(main)), thumb_name=_store(_webp(thumb), "-t"),
                       width=main.width, height=main.height)


def product_image_apply(*, product, data: bytes) -> StoredImage:
    """Store ``data`` as ``product``'s picture and set its fields (the caller saves).
    The previous files stay: their names may be in caches and other products'."""
    stored = product_image_store(data=data)
    product.image = stored.name
    product.image_width, product.image_height = stored.width, stored.height
    product.image_thumb = stored.thumb_name
    return stored
