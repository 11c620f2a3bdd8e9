"""Serializers of the bearer API (``/a/``): what the endpoints answer and accept.

None of them ever carries a token secret, except :class:`PersonalTokenCreatedSerializer`, the
one-time answer to minting a personal access token.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from cells_oidc.internal import pat


class TokenSummarySerializer(serializers.Serializer):
    """The bearer token of the current request, as the API sees it."""

    kind = serializers.ChoiceField(
        choices=["jwt", "pat"], help_text="jwt: an OAuth access token; pat: personal."
    )
    client_id = serializers.CharField(
        allow_null=True, help_text="The client the token was issued to (none for a PAT)."
    )
    scope = serializers.CharField(help_text="Space-separated scopes granted to the token.")
    expires_at = serializers.IntegerField(help_text="Expiry, seconds since the epoch.")


class UserSerializer(serializers.Serializer):
    """``GET /a/user/me``: the caller's profile."""

    sub = serializers.CharField(help_text="The user's stable identifier (the `sub` of tokens).")
    login = serializers.CharField(help_text="The login (Cells calls it the user name).")
    name = serializers.CharField(help_text="The full name, or the login when none is known.")
    given_name = serializers.CharField(allow_blank=True)
    family_name = serializers.CharField(allow_blank=True)
    email = serializers.EmailField(
        allow_null=True, help_text="Only when the token has the `email` scope (OpenID Connect Core §5.4)."
    )
    groups = serializers.ListField(child=serializers.CharField(), help_text="Names of the user's groups.")
    token = TokenSummarySerializer()


class PersonalTokenSerializer(serializers.Serializer):
    """A personal access token as listed: everything but the secret."""

    id = serializers.IntegerField()
    kind = serializers.SerializerMethodField(help_text='Always "personal".')
    label = serializers.CharField(allow_blank=True)
    starts_with = serializers.CharField(source="hint", help_text="The first characters of the token.")
    scope = serializers.CharField()
    created = serializers.DateTimeField()
    last_used = serializers.DateTimeField(allow_null=True, help_text="Recorded to the minute.")
    expires = serializers.DateTimeField(
        help_text="The current expiry (pushed forward on use when auto-refreshing)."
    )
    auto_refresh_seconds = serializers.IntegerField(
        allow_null=True, help_text="The auto-refresh window, or null for a fixed expiry."
    )
    max_expires = serializers.DateTimeField(
        allow_null=True, help_text="An auto-refreshing token is never valid after this."
    )
    status = serializers.SerializerMethodField(help_text="active, expired or revoked.")
    owner = serializers.CharField(source="user.get_username", help_text="The login of the token's owner.")
    sign_in = serializers.UUIDField(
        source="token_family_id",
        allow_null=True,
        help_text="The sign-in (grant id) whose access token minted this token through the API: ending "
        "that sign-in revokes this token. Null for a token minted on the account page, in the admin "
        "or by a command.",
    )

    def get_kind(self, obj: Any) -> str:
        return "personal"

    def get_status(self, obj: Any) -> str:
        return pat.status(obj)


class PersonalTokenCreatedSerializer(PersonalTokenSerializer):
    """The answer to minting a token: the only time its secret is ever shown."""

    token = serializers.CharField(help_text="The secret. Store it now: it cannot be shown again.")


class PersonalTokenCreateSerializer(serializers.Serializer):
    """``POST /a/personal-tokens``: give ``expires_in`` (a fixed expiry) or ``auto_refresh_seconds``."""

    label = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    scope = serializers.CharField(
        required=False,
        help_text="Space-separated scopes, at most those of the token making the request "
        "(default: the site's default scopes that it has).",
    )
    expires_in = serializers.IntegerField(
        required=False, min_value=1, help_text="Fixed expiry: valid for this many seconds."
    )
    auto_refresh_seconds = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Auto-refresh: expires after this many seconds without use; every use pushes the expiry.",
    )
    max_lifetime = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="With auto_refresh_seconds: never valid longer than this many seconds after creation.",
    )
    user = serializers.CharField(
        required=False,
        help_text="Mint for another user (their login): needs an access token with the scope "
        "cells_oidc:admin and the permission cells_oidc.add_personalaccesstoken.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("expires_in" in attrs) == ("auto_refresh_seconds" in attrs):
            raise serializers.ValidationError("Give either expires_in or auto_refresh_seconds.")
        if "max_lifetime" in attrs and "auto_refresh_seconds" not in attrs:
            raise serializers.ValidationError({"max_lifetime": "Only with auto_refresh_seconds."})
        for name in ("expires_in", "auto_refresh_seconds", "max_lifetime"):
            if attrs.get(name, 0) > 100 * 365 * 86400:
                raise serializers.ValidationError({name: "Too long."})
        return attrs


class GrantSerializer(serializers.Serializer):
    """A sign-in the caller holds (:func:`cells_oidc.internal.grants.held_by`, the account page's rule too):
    a live refresh token, or a live access token of a sign-in without one."""

    id = serializers.UUIDField(help_text="The sign-in (token family); DELETE /a/tokens/{id} ends it.")
    kind = serializers.CharField(help_text='Always "grant".')
    client_id = serializers.CharField()
    client_name = serializers.CharField(allow_blank=True)
    scope = serializers.CharField(allow_blank=True)
    signed_in = serializers.DateTimeField(
        allow_null=True,
        help_text="When the user authenticated for this sign-in (null for tokens issued before "
        "cells-oidc was installed).",
    )
    last_used = serializers.DateTimeField(help_text="When the application last obtained tokens with it.")


class TokensSerializer(serializers.Serializer):
    """``GET /a/tokens``: the caller's grants and personal access tokens (never their secrets)."""

    grants = GrantSerializer(many=True)
    personal_tokens = PersonalTokenSerializer(many=True)
