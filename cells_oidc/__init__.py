"""cells-oidc: an OpenID Connect provider for Django that speaks Pydio Cells' dialect."""

__version__ = "0.1.0"
