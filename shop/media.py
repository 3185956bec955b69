"""/media/: the uploaded pictures (public), served by Django.

Only names shop.images writes are served (a folder, a lower-case hex hash,
an image extension): nothing else under MEDIA_ROOT, nothing outside it, no
dot segments, no symlink out. The names change with the content, so a
response may be kept for a year (``immutable``: a reload does not even ask);
ETag and Last-Modified still answer a revalidation with 304. A proxy or CDN in
front keeps these responses too, so Django serves each picture about once.
"""

from __future__ import annotations

import os
import re
import stat

from django.conf import settings
from django.http import FileResponse, Http404
from django.utils.cache import get_conditional_response
from django.utils.http import http_date, quote_etag
from django.views.decorators.http import require_safe

# Two levels at most ("products/<hash>.webp", "profile/<name>.png"), each a
# plain lower-case word: no "..", no leading slash, no backslash, no dot file.
MEDIA_NAME_RE = re.compile(r"(?:[a-z0-9][a-z0-9_-]{0,63}/){1,2}[A-Za-z0-9][A-Za-z0-9_-]{0,127}\.(webp|jpe?g|png|gif)")
CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
                 "gif": "image/gif"}
CACHE_CONTROL = "public, max-age=31536000, immutable"


def _media_path(name: str) -> tuple[str, os.stat_result]:
    """The file behind ``name`` and its stat, or Http404."""
    root = os.path.realpath(settings.MEDIA_ROOT)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        raise Http404("outside MEDIA_ROOT")
    try:
        info = os.stat(path)
    except OSError:
        raise Http404("no such file") from None
    if not stat.S_ISREG(info.st_mode):
        raise Http404("not a file")
    return path, info


@require_safe
def media_file(request, name: str):
    match = MEDIA_NAME_RE.fullmatch(name)
    if match is None:
        raise Http404("not a media name")
    path, info = _media_path(name)
    etag = quote_etag(f"{info.st_size:x}-{int(info.st_mtime):x}")
    not_modified = get_conditional_response(request, etag=etag, last_modified=int(info.st_mtime))
    if not_modified is not None:  # 304 (or 412 for an If-Match that fails)
        response = not_modified
    else:
        response = FileResponse(open(path, "rb"), content_type=CONTENT_TYPES[match[1].lower()])
        response["Content-Length"] = str(info.st_size)
    response["ETag"] = etag
    response["Last-Modified"] = http_date(info.st_mtime)
    response["Cache-Control"] = CACHE_CONTROL
    return response
