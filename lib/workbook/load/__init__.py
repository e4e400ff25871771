"""Load runs: Locust user classes for the platform's journeys (`locustfile.py`, run by Locust in
processes of its own), the runner that starts them within the env's bounds and reads their stats
(`runner.py`), and the DataFrame and chart helpers notebooks show results with (`report.py`).

Importing this package never imports Locust (its gevent must stay out of a notebook's kernel).
"""
