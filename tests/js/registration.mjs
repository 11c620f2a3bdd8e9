// An independent client (oauth4webapi) registers itself (RFC 7591) as a public client with a
// loopback redirect URI (RFC 8252 §7.3), then signs in with it: authorization code + PKCE, the code
// exchanged, userinfo called. A registration with a redirect URI the admin's rules refuse is refused
// by the library's response processing (RFC 7591 §3.2.2 invalid_redirect_uri).
// Usage: node registration.mjs ISSUER REDIRECT_URI BAD_REDIRECT_URI; prints the registered client as
// JSON, then the authorization URL, reads the callback URL from stdin, prints a JSON summary.
import * as oauth from 'oauth4webapi'
import { discover, insecure, readCallback } from './common.mjs'

const [issuerArg, redirectUri, badRedirectUri] = process.argv.slice(2)
const as = await discover(issuerArg)

const metadata = {
  client_name: 'oauth4webapi registration test',
  redirect_uris: [redirectUri],
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  scope: 'openid profile email',
}

let refused = null
try {
  await oauth.processDynamicClientRegistrationResponse(
    await oauth.dynamicClientRegistrationRequest(as, { ...metadata, redirect_uris: [badRedirectUri] }, insecure))
} catch (error) {
  if (!(error instanceof oauth.ResponseBodyError)) throw error
  refused = { status: error.status, error: error.error }
}

const client = await oauth.processDynamicClientRegistrationResponse(
  await oauth.dynamicClientRegistrationRequest(as, metadata, insecure))
console.log(JSON.stringify({ client_id: client.client_id }))
const clientAuth = oauth.None()

const verifier = oauth.generateRandomCodeVerifier()
const state = oauth.generateRandomState()
const nonce = oauth.generateRandomNonce()
const authorizationUrl = new URL(as.authorization_endpoint)
for (const [name, value] of Object.entries({
  client_id: client.client_id,
  response_type: 'code',
  redirect_uri: redirectUri,
  scope: 'openid profile email',
  code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
})) authorizationUrl.searchParams.set(name, value)
console.log(authorizationUrl.href)

const callbackParams = oauth.validateAuthResponse(as, client, await readCallback(), state)
const tokens = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParams, redirectUri, verifier, insecure),
  { expectedNonce: nonce, requireIdToken: true })
const claims = oauth.getValidatedIdTokenClaims(tokens)
const userinfo = await oauth.processUserInfoResponse(as, client, claims.sub,
  await oauth.userInfoRequest(as, client, tokens.access_token, insecure))
console.log(JSON.stringify({
  refused,
  client_id: client.client_id,
  has_secret: client.client_secret !== undefined,
  token_endpoint_auth_method: client.token_endpoint_auth_method,
  has_registration_access_token: typeof client.registration_access_token === 'string',
  id_token_aud: claims.aud,
  sub: claims.sub,
  userinfo_sub: userinfo.sub,
  token_type: tokens.token_type,
}))
