"""The Flask application: discovery, JWKS, the authorization endpoint with its scriptable
consent form, token, userinfo and registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, jsonify, request
from markupsafe import escape

from standins.oidc import SCRIPTABLE_MARKER
from standins.oidc.grants import AccessTokens, CodeGrant, IdToken, Registration, S256Pkce, UserInfoFromToken
from standins.oidc.models import SCOPES, User
from standins.oidc.provider import Provider
from standins.oidc.settings import OidcStandinSettings
from standins.oidc.store import Store

HOME = f"""<!doctype html>
<title>standins.oidc</title>
<h1>A stand-in OpenID Connect provider for tests</h1>
<p>{SCRIPTABLE_MARKER}: POST an authorization URL with <code>sub=&lt;email&gt;</code> to log that subject in
(<code>email</code> = <code>sub</code>), or with <code>action=deny</code> to refuse.
Discovery: <a href="/.well-known/openid-configuration">/.well-known/openid-configuration</a>.</p>
"""

CONSENT = """<!doctype html>
<title>Sign in - standins.oidc</title>
<h1>Sign in to {client}</h1>
<p>Scope: {scope}</p>
<form method="post">
  <label>Email (becomes <code>sub</code> and <code>email</code>) <input name="sub" type="email" required></label>
  <button name="action" value="allow">Sign in</button>
  <button name="action" value="deny" formnovalidate>Deny</button>
</form>
"""


def create_app(settings: OidcStandinSettings, issuer: str | None, data_dir: Path | None) -> Flask:
    app = Flask("standins.oidc", static_folder=None)
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": settings.token_ttl_s}
    app.config["OAUTH2_SCOPES_SUPPORTED"] = list(SCOPES)
    provider = Provider(app, settings, issuer, Store(settings, data_dir))
    provider.register_grant(CodeGrant, [S256Pkce(), IdToken(provider)])
    protector = ResourceProtector()
    protector.register_token_validator(AccessTokens(provider))
    provider.register_endpoint(UserInfoFromToken(resource_protector=protector))
    provider.register_endpoint(Registration())

    def refused(error: OAuth2Error) -> Response:
        """To the client's redirect URI when it is registered, else a 400 here (RFC 6749 4.1.2.1)."""
        return provider.handle_error_response(request, error)

    @app.get("/")
    def home() -> str:
        return HOME

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", version=settings.version, issuer=provider.issuer)

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        return jsonify(provider.metadata())

    @app.get("/jwks")
    def jwks() -> Response:
        return jsonify(keys=[provider.store.key.as_dict(private=False)])

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        if request.method == "GET":
            try:
                grant = provider.get_consent_grant(end_user=None)
            except OAuth2Error as error:
                return refused(error)
            client = grant.request.client
            return CONSENT.format(client=escape(client.name or client.client_id), scope=escape(grant.request.scope))
        action, sub = request.form.get("action", "allow"), request.form.get("sub", "").strip()
        if action not in ("allow", "deny") or (action == "allow" and not sub):
            return Response("the consent form needs sub=<email>, or action=deny\n", 400, mimetype="text/plain")
        user = User(sub) if sub else None
        try:
            grant = provider.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            return refused(error)
        return provider.create_authorization_response(grant=grant, grant_user=user if action == "allow" else None)

    @app.post("/token")
    def token() -> Response:
        return provider.create_token_response()

    @app.route("/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        return provider.create_endpoint_response("userinfo")

    @app.post("/register")
    def register() -> Any:
        if settings.registration_token is None:
            return Response("registration is closed: no OIDC_STANDIN_REGISTRATION_TOKEN\n", 404, mimetype="text/plain")
        return provider.create_endpoint_response("client_registration")

    return app
