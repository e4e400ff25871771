"""What the platform's services stand on: settings first, then errors, the stores' clients and
schemas (the backend database's tables among them), and the circuit breaker. It imports no
other part of `app`."""
