"""An OpenID Connect provider for tests that enforces what real providers enforce.

    python -m standins.oidc --host 127.0.0.1 --port PORT [--issuer URL] [--data-dir DIR]

Built on authlib's authorization server (Flask, served by werkzeug's threaded server). It
stands in for Google or Okta in local and Docker runs, and refuses what they refuse:

- authorization code flow only, for registered confidential clients; `redirect_uri` is
  required and must equal one the client registered, character for character (an unknown
  client or redirect URI is a 400 page, never a redirect);
- PKCE required with S256 (a missing challenge or `plain` is refused at the authorization
  endpoint; a missing or wrong `code_verifier` is `invalid_grant` at the token endpoint);
- `openid` scope and a `nonce` required; the nonce is echoed in the ID token and may not be
  reused by the same client; `state` is passed back untouched;
- client id and secret checked at the token endpoint (the method the client registered,
  `client_secret_basic` by default); codes are bound to their client and redirect URI, live
  `OIDC_STANDIN_CODE_TTL_S` (60 s) and are spent by their first exchange, whatever its
  outcome; a spent code presented again also revokes the tokens it bought (RFC 6749 4.1.2);
- ID tokens signed RS256 with a key published at `/jwks` (kept in the data dir, so a
  restart does not change it); access tokens are opaque and good for `/userinfo`.

The issuer is `--issuer` (the embedded stack passes the provider's URL). Without it each
request's own base URL is the issuer, for a provider reached under two names (docker-compose:
`oidc:9400` inside the network, `127.0.0.1:59400` from the host); a real provider has one.

Clients come from `OIDC_STANDIN_CLIENTS` (JSON, for deployments where every URL is known in
advance, as in docker-compose) or register themselves at `/register` (RFC 7591 dynamic
registration, open only to the initial access token `OIDC_STANDIN_REGISTRATION_TOKEN`); the
embedded stack's auth service registers its real callback URL that way when it is prepared,
since its port is only known then. Registrations are kept in the data dir.

The one thing a real provider has that this one replaces is the login page: the page at
the authorization URL is a form, and POSTing it with `sub=<email>` logs that subject in
(`email` = `sub`, never marked verified), `action=deny` refuses (`error=access_denied`).
That is what makes the flow scriptable by checks; `/` says so (`SCRIPTABLE_MARKER`).
"""

SCRIPTABLE_MARKER = "standins.oidc scriptable consent"
