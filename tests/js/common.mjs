// What both oauth4webapi scripts do the same way: discover the provider on the live test server,
// and read the callback URL the Python test sends on stdin once the person signed in.
import * as oauth from 'oauth4webapi'
import * as readline from 'node:readline'

export const insecure = { [oauth.allowInsecureRequests]: true } // the live test server is http://127.0.0.1

export async function discover (issuerArg) {
  const issuer = new URL(issuerArg)
  return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
}

export async function readCallback () {
  const lines = readline.createInterface({ input: process.stdin })
  const callback = await new Promise((resolve) => lines.once('line', resolve))
  lines.close()
  return new URL(callback)
}
