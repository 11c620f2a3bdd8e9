// The demo site's front end: signs in through the site's provider as "cells-frontend" (oidc.js),
// shows the profile from GET /a/user/me and the user's sign-ins and tokens from GET /a/tokens.
import { OidcClient } from "./oidc.js";

const app = document.getElementById("app");
const config = app.dataset;
// Set while this tab is signed in, so that a reload signs in again silently (prompt=none).
const SIGNED_IN_KEY = "cells-oidc:signed-in";

const client = new OidcClient({
  issuer: config.issuer,
  clientId: config.clientId,
  scope: config.scope,
  redirectUri: config.redirectUri,
  postLogoutRedirectUri: config.postLogoutRedirectUri,
});

const $ = (selector) => app.querySelector(selector);

function show(section, status = "") {
  $("#signed-in").hidden = section !== "signed-in";
  $("#signed-out").hidden = section !== "signed-out";
  $("#status").textContent = status;
  $("#status").hidden = !status;
}

function showError(error) {
  const box = $("#error");
  box.textContent = error ? `${error.error ? error.error + ": " : ""}${error.message}` : "";
  box.hidden = !error;
}

function setField(name, value) {
  for (const element of app.querySelectorAll(`[data-field="${name}"]`)) element.textContent = value;
}

const formatTime = (value) => (value ? new Date(value).toLocaleString() : "never");

async function api(path, init) {
  const response = await client.fetch(path, init);
  if (!response.ok && response.status !== 204) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error(body.detail || `HTTP ${response.status}`), { error: `API ${path}` });
  }
  return response.status === 204 ? null : response.json();
}

async function showProfile() {
  const me = await api(config.apiMe);
  setField("login", me.login);
  setField("name", me.name);
  setField("email", me.email || "(not shared)");
  setField("groups", me.groups.length ? me.groups.join(", ") : "none");
  show("signed-in");
  await showTokens();
}

async function showTokens() {
  const { grants, personal_tokens: personal } = await api(config.apiTokens);
  const rows = [
    ...grants.map((grant) => ({
      id: grant.id,
      what: `Sign-in to ${grant.client_name || grant.client_id}`,
      scope: grant.scope,
      used: grant.last_used,
      expires: null,
    })),
    ...personal.map((token) => ({
      id: token.id,
      what: `Personal token ${token.starts_with}… ${token.label}`,
      scope: token.scope,
      used: token.last_used,
      expires: token.expires,
    })),
  ];
  const body = $("#tokens tbody");
  body.replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      const cells = [row.what, row.scope, formatTime(row.used), row.expires ? formatTime(row.expires) : "-"];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text; // never innerHTML: labels and names are user data
        tr.append(td);
      }
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Revoke";
      button.addEventListener("click", () => revoke(row.id));
      const cell = document.createElement("td");
      cell.append(button);
      tr.append(cell);
      return tr;
    }),
  );
}

async function revoke(id) {
  try {
    await api(`${config.apiTokens}/${encodeURIComponent(id)}`, { method: "DELETE" });
    await showTokens();
  } catch (error) {
    // Revoking this very sign-in ends it: the next call fails and the page shows "signed out".
    signedOut(error);
  }
}

function signedOut(error) {
  sessionStorage.removeItem(SIGNED_IN_KEY);
  client.forget();
  showError(error);
  show("signed-out");
}

client.onchange = (tokens) => {
  sessionStorage.setItem(SIGNED_IN_KEY, "1");
  setField("token-expiry", `expires ${new Date(tokens.expiresAt).toLocaleTimeString()}`);
};
client.onerror = signedOut;

$("#sign-in").addEventListener("click", () => client.signIn().catch(signedOut));
$("#sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(SIGNED_IN_KEY);
  client.signOut().catch(signedOut);
});

async function start() {
  if (client.isCallback()) {
    try {
      await client.handleCallback();
    } finally {
      // The code is single use: take it out of the address bar and the history.
      history.replaceState(null, "", config.home);
    }
    await showProfile();
  } else if (sessionStorage.getItem(SIGNED_IN_KEY)) {
    // Reloaded while signed in: tokens were only in memory; ask again without any interaction.
    sessionStorage.removeItem(SIGNED_IN_KEY);
    show(null, "Signing you in…");
    await client.signIn({ prompt: "none" });
  } else {
    show("signed-out");
  }
}

start().catch((error) => signedOut(error.error === "login_required" ? null : error));
