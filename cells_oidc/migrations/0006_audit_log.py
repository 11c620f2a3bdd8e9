# The audit trail (docs/audit.md): cells_oidc.models.AuditEvent.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):
    dependencies = [
        ("cells_oidc", "0005_authorization_correctness"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(oauth2_settings.APPLICATION_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "time",
                    models.DateTimeField(
                        db_index=True, default=django.utils.timezone.now, verbose_name="time"
                    ),
                ),
                ("event", models.CharField(db_index=True, max_length=40, verbose_name="event")),
                ("login", models.CharField(blank=True, max_length=150, verbose_name="login")),
                ("client_id", models.CharField(blank=True, max_length=100, verbose_name="client id")),
                ("ip", models.GenericIPAddressField(blank=True, null=True, verbose_name="IP address")),
                ("user_agent", models.CharField(blank=True, max_length=300, verbose_name="user agent")),
                ("request_id", models.CharField(blank=True, max_length=64, verbose_name="request id")),
                ("details", models.JSONField(blank=True, default=dict, verbose_name="details")),
                (
                    "application",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="cells_audit_events",
                        to=oauth2_settings.APPLICATION_MODEL,
                        verbose_name="client",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="cells_audit_events",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
            ],
            options={
                "verbose_name": "audit event",
                "verbose_name_plural": "audit events",
                "ordering": ["-time", "-pk"],
            },
        ),
    ]
