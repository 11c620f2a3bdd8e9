# Pushed authorization requests (RFC 9126) and DPoP (RFC 9449): docs/par.md, docs/dpop.md.
# Pushed requests themselves live in the shared cache (single use, seconds long), not here.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cells_oidc", "0010_backchannel_logout"),
    ]

    operations = [
        migrations.AddField(
            model_name="clientpolicy",
            name="require_pushed_authorization_requests",
            field=models.BooleanField(
                default=False,
                help_text="RFC 9126 §5: the client must push its authorization requests to the PAR "
                "endpoint and send only the request_uri it got to the authorization endpoint.",
                verbose_name="require pushed authorization requests",
            ),
        ),
        migrations.AddField(
            model_name="clientpolicy",
            name="require_dpop",
            field=models.BooleanField(
                default=False,
                help_text="RFC 9449: every token request of this client carries a DPoP proof, so its "
                "access tokens (and a public client's refresh tokens) are bound to the client's key. "
                "Off for Cells' clients.",
                verbose_name="require DPoP",
            ),
        ),
        migrations.AddField(
            model_name="tokenfamily",
            name="dpop_jkt",
            field=models.CharField(blank=True, default="", max_length=64, verbose_name="DPoP key thumbprint"),
        ),
    ]
