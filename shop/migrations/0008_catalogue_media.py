from django.db import migrations, models


class Migration(migrations.Migration):
    """Product pictures (shop.images): the stored picture with its size, and the catalogue's thumbnail."""

    dependencies = [
        ("shop", "0007_unpaid_orders_cap"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="image",
            field=models.ImageField(
                blank=True, height_field="image_height",
                help_text="JPEG, PNG, WebP or GIF, up to 8 MB; stored as WebP, at most 1200 px on its longest side, "
                          "with a 480×360 thumbnail for the catalogue.",
                max_length=200, upload_to="products/", width_field="image_width"),
        ),
        migrations.AddField(
            model_name="product",
            name="image_height",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="product",
            name="image_thumb",
            field=models.CharField(blank=True, editable=False, max_length=200),
        ),
        migrations.AddField(
            model_name="product",
            name="image_width",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True),
        ),
    ]
