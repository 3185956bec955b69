"""Product pictures (issue 20, point 1): uploaded in the admin, checked and
scaled by Pillow, stored under content-hashed names, and served from /media/
with a year's cache, a correct type, revalidation and no way out of MEDIA_ROOT."""

import hashlib
import io
import re
from pathlib import Path

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from shop import images
from shop.models import Category, Product

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
PRODUCT_ADD_URL = reverse("admin:shop_product_add")


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _picture(size=(2400, 1600), fmt="JPEG", colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def _product_post(**extra) -> dict:
    return {
        "name": "Game Card", "slug": "game-card", "price": "10.00", "currency": "CNY", "active": "on",
        "description": "", "usage_notes": "", "name_zh": "游戏卡", "description_zh": "", "usage_notes_zh": "",
        "deliver_by_email": "on", "auto_replacements_per_order": "0", "max_per_order": "10", "hold_minutes": "",
        "kind": "unique", "sales_cap": "",
        "tiers-TOTAL_FORMS": "0", "tiers-INITIAL_FORMS": "0", "tiers-MIN_NUM_FORMS": "0",
        "tiers-MAX_NUM_FORMS": "1000", "fulfil_within_minutes": "60",
        "manual_fields-TOTAL_FORMS": "0", "manual_fields-INITIAL_FORMS": "0", "manual_fields-MIN_NUM_FORMS": "0",
        "manual_fields-MAX_NUM_FORMS": "1000",
        "variants-TOTAL_FORMS": "0", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000", **extra,
    }


def test_an_uploaded_picture_is_scaled_stored_as_webp_under_its_hash_with_a_thumbnail(admin_client, media_root):
    # given: a 2400 × 1600 JPEG
    upload = SimpleUploadedFile("photo of card.jpg", _picture(), content_type="image/jpeg")
    # when
    response = admin_client.post(PRODUCT_ADD_URL, _product_post(image=upload))
    # then
    assert response.status_code == 302, response.context["adminform"].form.errors
    product = Product.objects.get(slug="game-card")
    assert re.fullmatch(r"products/[0-9a-f]{32}\.webp", product.image.name)
    assert re.fullmatch(r"products/[0-9a-f]{32}-t\.webp", product.image_thumb)
    main = (media_root / product.image.name).read_bytes()
    thumb = (media_root / product.image_thumb).read_bytes()
    assert product.image.name == f"products/{hashlib.sha256(main).hexdigest()[:32]}.webp"
    assert product.image_thumb == f"products/{hashlib.sha256(thumb).hexdigest()[:32]}-t.webp"
    with Image.open(io.BytesIO(main)) as stored:
        assert (stored.format, stored.size) == ("WEBP", (1200, 800))
    with Image.open(io.BytesIO(thumb)) as stored:
        assert (stored.format, stored.size) == ("WEBP", images.THUMB_SIZE)
    assert (product.image_width, product.image_height) == (1200, 800)
    # the upload itself is not kept: only the two files written by shop.images
    assert sorted(p.name for p in (media_root / "products").iterdir()) == sorted(
        [Path(product.image.name).name, Path(product.image_thumb).name])


def test_the_same_picture_uploaded_twice_is_one_file(media_root, make_product):
    # given
    first, second = make_product(), make_product()
    data = _picture(size=(640, 480), fmt="PNG")
    # when
    a = images.product_image_apply(product=first, data=data)
    b = images.product_image_apply(product=second, data=data)
    # then
    assert a == b
    assert len(list((media_root / "products").iterdir())) == 2


def test_metadata_is_dropped_and_the_picture_turned_upright(media_root):
    # given: a portrait photo stored sideways with EXIF orientation 6 and a GPS block
    picture = Image.new("RGB", (800, 400), (10, 120, 200))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 0.0)}
    out = io.BytesIO()
    picture.save(out, format="JPEG", exif=exif)
    # when
    stored = images.product_image_store(data=out.getvalue())
    # then
    assert (stored.width, stored.height) == (400, 800)
    with Image.open(media_root / stored.name) as result:
        assert not result.getexif()
        assert "exif" not in result.info


@pytest.mark.parametrize("data, message", [
    (b"%PDF-1.4 not a picture at all", "Upload a valid image"),
    (b"GIF89a" + b"\x00" * 40, "Upload a valid image"),
])
def test_the_admin_refuses_a_file_that_is_not_a_picture_with_a_sentence(admin_client, media_root, data, message):
    # given
    upload = SimpleUploadedFile("card.jpg", data, content_type="image/jpeg")
    # when
    response = admin_client.post(PRODUCT_ADD_URL, _product_post(image=upload))
    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["image"]
    assert len(errors) == 1 and message in errors[0]
    assert not Product.objects.exists()
    assert not media_root.exists() or not any(media_root.rglob("*.*"))


def test_the_admin_refuses_an_oversize_upload_with_a_sentence(admin_client, media_root, monkeypatch):
    # given: a limit of 100 KB and a picture over it
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 100 * 1024)
    noisy = Image.effect_noise((800, 800), 100).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    assert len(out.getvalue()) > 100 * 1024
    upload = SimpleUploadedFile("big.png", out.getvalue(), content_type="image/png")
    # when
    response = admin_client.post(PRODUCT_ADD_URL, _product_post(image=upload))
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["image"] == [
        "This picture is larger than 100.0\xa0KB. Save it smaller and upload it again."]
    assert not Product.objects.exists()


def test_a_picture_of_too_many_pixels_is_refused(media_root, monkeypatch):
    # given
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    # when / then
    with pytest.raises(images.ImageRejected) as refused:
        images.product_image_store(data=_picture(size=(40, 40)))
    assert refused.value.code == "image_too_many_pixels"
    assert not media_root.exists()


def test_the_admin_change_page_shows_the_preview_and_clearing_drops_the_thumbnail(admin_client, media_root,
                                                                                 make_product):
    # given
    product = make_product(slug="game-card", name="Game Card")
    images.product_image_apply(product=product, data=_picture(size=(600, 450)))
    product.save()
    url = reverse("admin:shop_product_change", args=[product.pk])
    # when
    page = admin_client.get(url).content.decode()
    # then: the fieldsets and the preview
    for legend in ("Basics", "Content in English", "Content in Chinese", "Image", "Delivery", "Limits"):
        assert f">{legend}</h2>" in page
    assert f'<img src="/media/{product.image_thumb}" alt="" width="240" height="180"' in page
    # when: the image is cleared
    response = admin_client.post(url, _product_post(**{"image-clear": "on"}))
    # then
    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert (product.image.name, product.image_thumb, product.image_width) == ("", "", None)


# --- /media/ ---------------------------------------------------------------------------


@pytest.fixture
def stored(media_root):
    return images.product_image_store(data=_picture(size=(300, 200)))


def test_media_is_served_with_a_year_of_immutable_cache_its_type_and_validators(client, stored, media_root):
    # when
    response = client.get(f"/media/{stored.name}")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["ETag"].startswith('"') and response["Last-Modified"].endswith("GMT")
    assert b"".join(response.streaming_content) == (media_root / stored.name).read_bytes()
    assert int(response["Content-Length"]) == (media_root / stored.name).stat().st_size


def test_media_answers_304_to_a_matching_etag_or_date(client, stored):
    first = client.get(f"/media/{stored.name}")
    # when
    by_etag = client.get(f"/media/{stored.name}", HTTP_IF_NONE_MATCH=first["ETag"])
    by_date = client.get(f"/media/{stored.name}", HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    other = client.get(f"/media/{stored.name}", HTTP_IF_NONE_MATCH='"something-else"')
    # then
    assert (by_etag.status_code, by_date.status_code, other.status_code) == (304, 304, 200)
    assert by_etag.content == b""
    assert by_etag["Cache-Control"] == "public, max-age=31536000, immutable"
    assert by_etag["ETag"] == first["ETag"]


def test_media_answers_head_and_refuses_post(client, stored):
    assert client.head(f"/media/{stored.name}").status_code == 200
    assert client.post(f"/media/{stored.name}").status_code == 405


@pytest.mark.parametrize("path", [
    "/media/../shop/project/settings.py",
    "/media/products/../../shop/project/settings.py",
    "/media/products/%2e%2e/%2e%2e/etc/passwd",
    "/media/%2e%2e/%2e%2e/etc/passwd.png",
    "/media/products/..%2f..%2fsecret.png",
    "/media//etc/passwd.png",
    "/media/products/x.png%00.webp",
    "/media/products/.hidden.webp",
    "/media/products/evil.svg",
    "/media/products/page.html",
    "/media/products/missing.webp",
    "/media/products",
    "/media/products/",
])
def test_media_refuses_anything_but_a_stored_picture(client, stored, media_root, path):
    # given: a secret beside MEDIA_ROOT and a picture-named file outside it
    (media_root.parent / "secret.png").write_bytes(b"top secret")
    # when
    response = client.get(path)
    # then
    assert response.status_code == 404
    assert b"top secret" not in response.content and b"SECRET_KEY" not in response.content


def test_media_does_not_follow_a_symlink_out_of_media_root(client, stored, media_root):
    # given: a link inside MEDIA_ROOT to a file outside it
    outside = media_root.parent / "outside.png"
    outside.write_bytes(_picture(size=(10, 10), fmt="PNG"))
    (media_root / "products" / "link.png").symlink_to(outside)
    # when
    response = client.get("/media/products/link.png")
    # then
    assert response.status_code == 404


# --- deployment ------------------------------------------------------------------------


def test_compose_keeps_the_media_folder_on_a_volume_for_web_and_worker():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    for name in ("web", "worker"):
        assert "media-data:/app/.data/media" in compose["services"][name]["volumes"], name
    assert "media-data" in compose["volumes"]
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    # a fresh named volume takes the image folder's owner: the non-root web can write to it
    assert "mkdir -p /app/.data/media && chown -R kamidrop:kamidrop /app/.data" in dockerfile


def test_media_root_comes_from_the_environment(monkeypatch):
    import importlib

    import shop.project.settings as project_settings

    monkeypatch.setenv("MEDIA_ROOT", "/srv/kamidrop-media")
    try:
        assert str(importlib.reload(project_settings).MEDIA_ROOT) == "/srv/kamidrop-media"
    finally:
        monkeypatch.delenv("MEDIA_ROOT")
        importlib.reload(project_settings)


# --- the demo's pictures ----------------------------------------------------------------


def test_demo_pictures_are_deterministic_and_every_demo_product_has_one(media_root):
    from django.core.management import call_command

    from shop.management.commands.demo import DEMO_CATEGORIES, DEMO_PRODUCTS, demo_picture

    # given
    assert demo_picture(name="Gift Card", colours=("#000000", "#ffffff")) == demo_picture(
        name="Gift Card", colours=("#000000", "#ffffff"))
    # when: run twice
    listed = Product.objects.filter(parent__isnull=True)  # a variant shows its product's picture and texts
    call_command("demo", stdout=io.StringIO())
    names = dict(listed.values_list("slug", "image"))
    files = sorted(p.name for p in (media_root / "products").iterdir())
    call_command("demo", stdout=io.StringIO())
    # then
    assert len(names) == len(DEMO_PRODUCTS) and all(names.values())
    assert dict(listed.values_list("slug", "image")) == names
    assert sorted(p.name for p in (media_root / "products").iterdir()) == files
    assert Category.objects.count() == len(DEMO_CATEGORIES) >= 4
    assert all(p.name_zh and p.description_zh and p.category_id for p in listed)
    assert all(v.name_zh and v.category_id for v in Product.objects.filter(parent__isnull=False))
