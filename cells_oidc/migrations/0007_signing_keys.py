# Reserved for its feature's schema (operations added by hand in this file; see the feature's docs).
# Issue 11: signing keys managed by the app (docs/keys.md) and the per-client ID token algorithm.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cells_oidc", "0006_audit_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="clientpolicy",
            name="id_token_algorithm",
            field=models.CharField(
                choices=[
                    ("RS256", "RS256 (RSA)"),
                    ("ES256", "ES256 (ECDSA P-256)"),
                    ("EdDSA", "EdDSA (Ed25519)"),
                ],
                default="RS256",
                help_text="OpenID Connect Registration §2 (id_token_signed_response_alg): the algorithm of this client's ID tokens. RS256 unless the client's app is known to verify another; a current signing key of that algorithm must exist (manage.py cells_oidc_keys create).",
                max_length=8,
                verbose_name="ID token signing algorithm",
            ),
        ),
        migrations.CreateModel(
            name="SigningKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("kid", models.CharField(editable=False, max_length=128, unique=True, verbose_name="key id")),
                (
                    "algorithm",
                    models.CharField(
                        choices=[
                            ("RS256", "RS256 (RSA)"),
                            ("ES256", "ES256 (ECDSA P-256)"),
                            ("EdDSA", "EdDSA (Ed25519)"),
                        ],
                        editable=False,
                        max_length=8,
                        verbose_name="algorithm",
                    ),
                ),
                (
                    "use",
                    models.CharField(
                        choices=[
                            ("both", "ID tokens and access tokens"),
                            ("id_token", "ID tokens"),
                            ("access_token", "access tokens"),
                        ],
                        default="both",
                        editable=False,
                        max_length=16,
                        verbose_name="signs",
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("next", "next (published, not signing yet)"),
                            ("current", "current (signing)"),
                            ("retired", "retired (published until its tokens expire)"),
                            ("revoked", "revoked"),
                        ],
                        db_index=True,
                        default="next",
                        editable=False,
                        max_length=8,
                        verbose_name="state",
                    ),
                ),
                ("public_jwk", models.JSONField(editable=False, verbose_name="public key")),
                ("encrypted_private_key", models.TextField(editable=False)),
                (
                    "created_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, editable=False, verbose_name="created"
                    ),
                ),
                (
                    "activated_at",
                    models.DateTimeField(blank=True, editable=False, null=True, verbose_name="signing since"),
                ),
                (
                    "retired_at",
                    models.DateTimeField(blank=True, editable=False, null=True, verbose_name="retired"),
                ),
                (
                    "revoked_at",
                    models.DateTimeField(blank=True, editable=False, null=True, verbose_name="revoked"),
                ),
            ],
            options={
                "verbose_name": "signing key",
                "verbose_name_plural": "signing keys",
                "ordering": ["-created_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("state", "current")),
                        fields=("algorithm", "use"),
                        name="cells_oidc_signingkey_one_current",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("state", "next")),
                        fields=("algorithm", "use"),
                        name="cells_oidc_signingkey_one_next",
                    ),
                ],
            },
        ),
    ]
