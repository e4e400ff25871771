"""An OpenAI-compatible, deterministic, offline model server the platform's agents call in local runs.

Its answers are computed from the request (`policy.py`), its usage from a documented tokenizer
(`tokens.py`); the test-control API injects faults scoped to one caller and shows every request.
"""
