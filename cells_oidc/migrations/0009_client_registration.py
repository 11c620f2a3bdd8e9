# Client authentication per client (RFC 7591 §2 token_endpoint_auth_method, jwks, jwks_uri for
# private_key_jwt, RFC 7523 §2.2) and dynamic client registration (RFC 7591, RFC 7592): initial
# access tokens and registrations with their hashed registration access tokens.

import django.db.models.deletion
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):
    dependencies = [
        ("cells_oidc", "0008_client_secrets"),
        ("oauth2_provider", "0022_refreshtoken_token_family_index"),
        migrations.swappable_dependency(oauth2_settings.APPLICATION_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="clientpolicy",
            name="token_endpoint_auth_method",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "client secret, HTTP Basic or in the body (default)"),
                    ("client_secret_basic", "client secret, HTTP Basic only (client_secret_basic)"),
                    ("client_secret_post", "client secret, in the body only (client_secret_post)"),
                    ("private_key_jwt", "a JWT signed with the client's key (private_key_jwt)"),
                ],
                default="",
                help_text="How a confidential client proves itself at the token, revocation and "
                "introspection endpoints. private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9) needs "
                "the client's public keys below; its secret is then refused.",
                max_length=32,
                verbose_name="client authentication",
            ),
        ),
        migrations.AddField(
            model_name="clientpolicy",
            name="jwks",
            field=models.TextField(
                blank=True,
                default="",
                help_text='The client\'s public keys as a JWK Set ({"keys": [...]}), for private_key_jwt. '
                "RS256, ES256 or EdDSA keys; never a private key.",
                verbose_name="public keys (JWKS)",
            ),
        ),
        migrations.AddField(
            model_name="clientpolicy",
            name="jwks_uri",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Where the client publishes its JWK Set instead (https; http only on a loopback "
                "host). Fetched when needed, cached, and fetched again for an unknown key id.",
                max_length=2000,
                verbose_name="public keys URL (jwks_uri)",
            ),
        ),
        migrations.CreateModel(
            name="InitialAccessToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("token_checksum", models.CharField(editable=False, max_length=64, unique=True)),
                ("hint", models.CharField(editable=False, max_length=16, verbose_name="starts with")),
                ("label", models.CharField(blank=True, max_length=100, verbose_name="label")),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("expires", models.DateTimeField(verbose_name="expires")),
                (
                    "multi_use",
                    models.BooleanField(default=False, verbose_name="may register several clients"),
                ),
                ("uses", models.PositiveIntegerField(default=0, verbose_name="clients registered")),
                ("last_used", models.DateTimeField(blank=True, null=True, verbose_name="last used")),
                ("revoked", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "initial access token",
                "verbose_name_plural": "initial access tokens",
                "ordering": ["-created"],
            },
        ),
        migrations.CreateModel(
            name="ClientRegistration",
            fields=[
                (
                    "application",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="cells_registration",
                        serialize=False,
                        to=oauth2_settings.APPLICATION_MODEL,
                    ),
                ),
                ("access_token_checksum", models.CharField(editable=False, max_length=64, unique=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                (
                    "initial_token",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="registrations",
                        to="cells_oidc.initialaccesstoken",
                        verbose_name="registered with",
                    ),
                ),
            ],
            options={
                "verbose_name": "dynamic client registration",
                "verbose_name_plural": "dynamic client registrations",
            },
        ),
    ]
