"""Django REST framework integration: bearer-token authentication and scope permissions.

::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["cells_oidc.api.authentication.BearerTokenAuthentication"],
    }

    class FilesView(APIView):
        permission_classes = [HasScope("files:read")]
"""
