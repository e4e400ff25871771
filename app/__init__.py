"""The reference platform the workbook checks (auth, backend, agents, LLM stand-in)."""
