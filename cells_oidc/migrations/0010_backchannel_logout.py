# OpenID Connect Back-Channel Logout 1.0: each client's backchannel_logout_uri and
# backchannel_logout_session_required (§2.2), and the queue of logout tokens to deliver (§2.5).

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):
    dependencies = [
        ("cells_oidc", "0009_client_registration"),
        migrations.swappable_dependency(oauth2_settings.APPLICATION_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="clientpolicy",
            name="backchannel_logout_session_required",
            field=models.BooleanField(
                default=False,
                help_text="OpenID Connect Back-Channel Logout §2.2: the client needs the sid claim in "
                "logout tokens (a sign-in without a browser session, such as the device flow, is then "
                "not announced).",
                verbose_name="back-channel logout needs the session id",
            ),
        ),
        migrations.AddField(
            model_name="clientpolicy",
            name="backchannel_logout_uri",
            field=models.CharField(
                blank=True,
                default="",
                help_text="OpenID Connect Back-Channel Logout §2.2: where a logout token is POSTed when a "
                "user's session with this client ends (logout, an ended session or sign-in). https (http "
                "only on a loopback host), no fragment. Empty: no back-channel logout.",
                max_length=2000,
                verbose_name="back-channel logout URL",
            ),
        ),
        migrations.CreateModel(
            name="LogoutDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "sid",
                    models.CharField(blank=True, db_index=True, max_length=64, verbose_name="session id"),
                ),
                ("sub", models.CharField(blank=True, max_length=255, verbose_name="subject")),
                (
                    "created",
                    models.DateTimeField(
                        default=django.utils.timezone.now, editable=False, verbose_name="created"
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0, verbose_name="attempts")),
                (
                    "next_attempt",
                    models.DateTimeField(blank=True, db_index=True, null=True, verbose_name="next attempt"),
                ),
                ("last_attempt", models.DateTimeField(blank=True, null=True, verbose_name="last attempt")),
                (
                    "last_status",
                    models.PositiveIntegerField(blank=True, null=True, verbose_name="last HTTP status"),
                ),
                ("delivered_at", models.DateTimeField(blank=True, null=True, verbose_name="delivered")),
                ("error", models.CharField(blank=True, max_length=300, verbose_name="error")),
                (
                    "application",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="cells_logout_deliveries",
                        to=oauth2_settings.APPLICATION_MODEL,
                        verbose_name="client",
                    ),
                ),
            ],
            options={
                "verbose_name": "back-channel logout delivery",
                "verbose_name_plural": "back-channel logout deliveries",
                "ordering": ["-created", "-pk"],
            },
        ),
    ]
