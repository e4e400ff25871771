"""The one TLS context every HTTP client of the workbook verifies servers with.

Building a context loads the CA bundle, about 20 ms of CPU. API clients are made afresh for
each check (a service restarted between two checks must not meet a pooled socket), three or
four per check, so a context each was a tenth of a notebook's time. One per process is enough:
an `SSLContext` is shared safely between clients and holds no connection state.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
