"""The agents: a supervisor and its sub-agents, the tools they call through a dispatcher, and
the LLM client. `app.backend.runs` executes them as runs; `registry` lists them.

They stand on `app.common` alone and never import the backend: what a run needs of the process
running it (where its events go, which agents it may hand off to) comes in through
`scope.Services`, as interfaces this package defines."""
