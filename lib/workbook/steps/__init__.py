"""Domain steps the notebooks share: arrange a user, a thread, a run; read what the platform
did; assert what a section asserts in more than one cell. One module per domain (auth, ws,
agents, ...); a notebook imports them instead of defining its own helpers."""
