"""Views of cells-oidc; thin subclasses of DOT's views where DOT has one."""
