"""The headless runner behind run_all.py: plan (selection), execute (papermill on forked
kernels, run.py), report. Notebooks never import this package. Nothing is imported here, so
`python -m workbook.runner.forkserver` starts without the rest of the runner."""
