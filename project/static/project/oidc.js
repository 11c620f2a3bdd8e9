// A small OpenID Connect client for a web page: the authorization code flow with PKCE (RFC 7636),
// run by the page itself, as the demo's front end (the public client "cells-frontend") signs in.
// No framework, no dependency: copy it.
//
// Where things are kept, and why:
// - The access, refresh and ID tokens live in memory only (this object). A script injected into the
//   page could use them while the page is open, but no storage keeps them for it to read later, and
//   closing the tab drops them. Reloading the page signs in again without a click (prompt=none)
//   while the provider's session lasts.
// - state, nonce and the PKCE code verifier live in sessionStorage (per tab, this origin only) just
//   between leaving for the provider and coming back, because they must survive that navigation;
//   they are removed as soon as the answer is read, whatever it is.

const PENDING_KEY = "cells-oidc:pending";
const REFRESH_MARGIN_MS = 60_000; // refresh a minute before expiry, as Cells' own clients do

export class OidcError extends Error {
  constructor(error, description) {
    super(description || error);
    this.error = error;
  }
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

// RFC 7636 §4.2: code_challenge = BASE64URL(SHA256(ASCII(code_verifier))).
async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function jwtClaims(jwt) {
  const part = String(jwt).split(".")[1] || "";
  const binary = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

export class OidcClient {
  constructor({ issuer, clientId, redirectUri, postLogoutRedirectUri, scope }) {
    this.issuer = issuer;
    this.clientId = clientId;
    this.redirectUri = redirectUri;
    this.postLogoutRedirectUri = postLogoutRedirectUri;
    this.scope = scope;
    this.tokens = null; // {accessToken, refreshToken, idToken, expiresAt, claims}
    this.onchange = null; // called with the tokens after every sign-in and refresh
    this.onerror = null; // called when a scheduled refresh fails (the user is signed out)
    this._metadata = null;
    this._refreshing = null;
    this._timer = null;
  }

  async metadata() {
    if (!this._metadata) {
      const url = new URL(".well-known/openid-configuration", this.issuer.replace(/\/?$/, "/"));
      const response = await fetch(url, { credentials: "omit" });
      if (!response.ok) throw new OidcError("discovery_failed", "The provider's metadata is unavailable.");
      const metadata = await response.json();
      // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
      if (metadata.issuer !== this.issuer) throw new OidcError("invalid_issuer", "Unexpected issuer.");
      this._metadata = metadata;
    }
    return this._metadata;
  }

  // Leave for the provider's authorization endpoint; it comes back to redirectUri.
  async signIn({ prompt } = {}) {
    const metadata = await this.metadata();
    const pending = { state: randomString(), nonce: randomString(), verifier: randomString(32) };
    sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
    const params = {
      response_type: "code",
      client_id: this.clientId,
      redirect_uri: this.redirectUri,
      scope: this.scope,
      state: pending.state,
      nonce: pending.nonce,
      code_challenge: await s256(pending.verifier),
      code_challenge_method: "S256",
    };
    if (prompt) params.prompt = prompt;
    const url = new URL(metadata.authorization_endpoint);
    url.search = new URLSearchParams(params).toString();
    window.location.assign(url.toString());
  }

  isCallback(href = window.location.href) {
    const here = new URL(href);
    const target = new URL(this.redirectUri);
    return here.origin === target.origin && here.pathname === target.pathname;
  }

  // Read the provider's answer on the redirect URI and redeem the code; returns the ID token claims.
  async handleCallback(href = window.location.href) {
    const params = new URL(href).searchParams;
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
    sessionStorage.removeItem(PENDING_KEY); // one use, whatever happens next
    // RFC 6749 §10.12: an answer to a request this tab did not make is refused (CSRF).
    if (!pending || params.get("state") !== pending.state) {
      throw new OidcError("invalid_state", "This sign-in was not started here (state mismatch).");
    }
    // RFC 9207 §2.4: the provider names itself in every answer; another name is a mix-up attack.
    if (params.get("iss") !== this.issuer) {
      throw new OidcError("invalid_issuer", "The answer does not come from the expected provider.");
    }
    if (params.has("error")) throw new OidcError(params.get("error"), params.get("error_description"));
    const code = params.get("code");
    if (!code) throw new OidcError("invalid_response", "The provider sent no code.");
    const tokens = await this.tokenRequest({
      grant_type: "authorization_code",
      code,
      redirect_uri: this.redirectUri,
      client_id: this.clientId,
      code_verifier: pending.verifier, // RFC 7636 §4.5
    });
    const claims = this.checkIdToken(tokens.id_token, { nonce: pending.nonce });
    this.setTokens(tokens, claims);
    return claims;
  }

  async tokenRequest(params) {
    const metadata = await this.metadata();
    const response = await fetch(metadata.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(params),
      credentials: "omit",
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new OidcError(body.error || "token_error", body.error_description || `HTTP ${response.status}`);
    }
    if (!body.access_token || String(body.token_type).toLowerCase() !== "bearer") {
      throw new OidcError("invalid_response", "The token endpoint sent no bearer token.");
    }
    return body;
  }

  // OpenID Connect Core §3.1.3.7. The ID token comes straight from the token endpoint over TLS,
  // which authenticates the issuer (item 6), so its signature is not checked here; its claims are.
  checkIdToken(idToken, { nonce, previous } = {}) {
    if (!idToken) throw new OidcError("invalid_id_token", "No ID token.");
    const claims = jwtClaims(idToken);
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    const problem =
      (claims.iss !== this.issuer && "wrong issuer") ||
      (!audiences.includes(this.clientId) && "not for this client") ||
      (audiences.length > 1 && claims.azp !== this.clientId && "not for this client") ||
      ((typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) && "expired") ||
      (nonce !== undefined && claims.nonce !== nonce && "nonce mismatch (replayed answer?)") ||
      // §12.2: a refreshed ID token is about the same user.
      (previous && claims.sub !== previous.sub && "another user");
    if (problem) throw new OidcError("invalid_id_token", `The ID token is refused: ${problem}.`);
    return claims;
  }

  setTokens(tokens, claims) {
    this.tokens = {
      accessToken: tokens.access_token,
      // Refresh tokens rotate: every answer carries the next one, the previous one is now dead.
      refreshToken: tokens.refresh_token || null,
      idToken: tokens.id_token || this.tokens?.idToken || null,
      expiresAt: Date.now() + Number(tokens.expires_in || 0) * 1000,
      claims,
    };
    this.scheduleRefresh();
    if (this.onchange) this.onchange(this.tokens);
  }

  scheduleRefresh() {
    clearTimeout(this._timer);
    if (!this.tokens?.refreshToken) return;
    const lifetime = this.tokens.expiresAt - Date.now();
    const delay = lifetime > 2 * REFRESH_MARGIN_MS ? lifetime - REFRESH_MARGIN_MS : lifetime / 2;
    this._timer = setTimeout(() => {
      this.refresh().catch((error) => {
        this.forget();
        if (this.onerror) this.onerror(error);
      });
    }, Math.max(1000, delay));
  }

  // One refresh at a time: a refresh token works once, two concurrent uses would look like theft
  // (RFC 9700 §4.14.2) and end the whole sign-in.
  refresh() {
    if (!this._refreshing) {
      this._refreshing = (async () => {
        try {
          if (!this.tokens?.refreshToken) throw new OidcError("login_required", "Signed out.");
          const tokens = await this.tokenRequest({
            grant_type: "refresh_token",
            refresh_token: this.tokens.refreshToken,
            client_id: this.clientId,
          });
          const claims = tokens.id_token
            ? this.checkIdToken(tokens.id_token, { previous: this.tokens.claims })
            : this.tokens.claims;
          this.setTokens(tokens, claims);
        } finally {
          this._refreshing = null;
        }
      })();
    }
    return this._refreshing;
  }

  // fetch() with the access token (RFC 6750 §2.1); refreshes first when it is about to expire.
  async fetch(input, init = {}) {
    if (!this.tokens) throw new OidcError("login_required", "Not signed in.");
    if (Date.now() > this.tokens.expiresAt - 5000) await this.refresh();
    const send = () =>
      fetch(input, {
        ...init,
        credentials: "omit",
        headers: { ...init.headers, Authorization: `Bearer ${this.tokens.accessToken}` },
      });
    let response = await send();
    if (response.status === 401 && this.tokens.refreshToken) {
      await this.refresh();
      response = await send();
    }
    return response;
  }

  forget() {
    clearTimeout(this._timer);
    this.tokens = null;
  }

  // Revoke the refresh token (RFC 7009), then end the provider's session and come back
  // (OpenID Connect RP-Initiated Logout 1.0 §2: id_token_hint names the session to end).
  async signOut() {
    const metadata = await this.metadata();
    const { idToken, refreshToken } = this.tokens || {};
    this.forget();
    if (refreshToken && metadata.revocation_endpoint) {
      await fetch(metadata.revocation_endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          token: refreshToken,
          token_type_hint: "refresh_token",
          client_id: this.clientId,
        }),
        credentials: "omit",
      }).catch(() => {}); // the logout below ends the sign-in anyway
    }
    const params = { client_id: this.clientId, post_logout_redirect_uri: this.postLogoutRedirectUri };
    if (idToken) params.id_token_hint = idToken;
    const url = new URL(metadata.end_session_endpoint);
    url.search = new URLSearchParams(params).toString();
    window.location.assign(url.toString());
  }
}
