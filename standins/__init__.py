"""Stand-ins for the third-party services the platform depends on: a model provider (`llm`),
ClickHouse over chDB (`clickhouse`), an OpenID Connect provider (`oidc`).

None of this is the platform under test. Each stand-in is a real network server that
enforces what the service it replaces enforces, so a check relying on it can fail. They
import neither `app` (the platform) nor `workbook` (the checks): the stack only launches
them as processes (`python -m standins.<name>`).
"""
