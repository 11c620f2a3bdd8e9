// An independent client (oauth4webapi) signs in with a pushed authorization request (RFC 9126),
// PKCE and DPoP (RFC 9449), calls userinfo with its DPoP-bound token and refreshes it.
// Usage: node par_dpop.mjs ISSUER CLIENT_ID REDIRECT_URI; prints the authorization URL, reads the
// callback URL from stdin, prints a JSON summary.
import * as oauth from 'oauth4webapi'
import { discover, insecure, readCallback } from './common.mjs'

const [issuerArg, clientId, redirectUri] = process.argv.slice(2)
const as = await discover(issuerArg)
const client = { client_id: clientId }
const clientAuth = oauth.None()
const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))

const verifier = oauth.generateRandomCodeVerifier()
const state = oauth.generateRandomState()
const params = new URLSearchParams({
  response_type: 'code',
  redirect_uri: redirectUri,
  scope: 'openid email profile pydio offline',
  code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
})
const pushed = await oauth.processPushedAuthorizationResponse(
  as, client, await oauth.pushedAuthorizationRequest(as, client, clientAuth, params, insecure))
const authorizationUrl = new URL(as.authorization_endpoint)
authorizationUrl.searchParams.set('client_id', clientId)
authorizationUrl.searchParams.set('request_uri', pushed.request_uri)
console.log(authorizationUrl.href)

const callbackParams = oauth.validateAuthResponse(as, client, await readCallback(), state)
const tokens = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParams, redirectUri, verifier,
    { DPoP, ...insecure }),
  { expectedNonce: oauth.expectNoNonce, requireIdToken: true })
const sub = oauth.getValidatedIdTokenClaims(tokens).sub
const userinfo = await oauth.processUserInfoResponse(as, client, sub,
  await oauth.userInfoRequest(as, client, tokens.access_token, { DPoP, ...insecure }))
const asBearer = await fetch(as.userinfo_endpoint, { headers: { Authorization: `Bearer ${tokens.access_token}` } })
const refreshed = await oauth.processRefreshTokenResponse(as, client,
  await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, { DPoP, ...insecure }))
const withoutProof = await fetch(as.token_endpoint, {
  method: 'POST',
  headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token, client_id: clientId }),
})
console.log(JSON.stringify({
  token_type: tokens.token_type,
  refreshed_token_type: refreshed.token_type,
  userinfo_sub: userinfo.sub,
  sub,
  bearer_status: asBearer.status,
  bearer_challenge: asBearer.headers.get('www-authenticate'),
  refresh_without_proof: (await withoutProof.json()).error,
}))
