"""The implementation of cells-oidc: not a public API.

Nothing here is promised to keep its name or signature between releases. Sites and integrators use
the public modules at the package root (:mod:`cells_oidc.conf`, :mod:`cells_oidc.adapter`,
:mod:`cells_oidc.signals`, :mod:`cells_oidc.urls`, :mod:`cells_oidc.views`, :mod:`cells_oidc.checks`,
:mod:`cells_oidc.decorators`, :mod:`cells_oidc.api.authentication`, :mod:`cells_oidc.api.permissions`)
and the template names documented in docs/pages.md. docs/architecture.md maps this package.
"""
