# Confidential clients' secrets as fast hashes, several per client during a rotation
# (cells_oidc.models.ClientSecret, cells_oidc.internal.client_secrets, docs/operations.md).

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):
    dependencies = [
        ("cells_oidc", "0007_signing_keys"),
        migrations.swappable_dependency(oauth2_settings.APPLICATION_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ClientSecret",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("digest", models.CharField(editable=False, max_length=255)),
                ("hint", models.CharField(blank=True, editable=False, max_length=8, verbose_name="starts with")),
                (
                    "created",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False, verbose_name="created"),
                ),
                ("expires", models.DateTimeField(blank=True, null=True, verbose_name="valid until")),
                ("last_used", models.DateTimeField(blank=True, editable=False, null=True, verbose_name="last used")),
                (
                    "application",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="cells_secrets",
                        to=oauth2_settings.APPLICATION_MODEL,
                        verbose_name="client",
                    ),
                ),
            ],
            options={
                "verbose_name": "client secret",
                "verbose_name_plural": "client secrets",
                "ordering": ["-created"],
            },
        ),
    ]
