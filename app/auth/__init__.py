"""The auth service: accounts, tokens, sessions, OIDC login, service credentials, audit."""
