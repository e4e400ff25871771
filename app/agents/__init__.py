"""The agents: a supervisor and its sub-agents, the tools they call through a dispatcher, and
the LLM client. `app.backend.runs` executes them as runs; `registry` lists them."""
