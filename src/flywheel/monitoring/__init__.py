"""Monitoring of served versions: the prediction log and delayed labels, window by window.

`logs` reads the logs, `statistics` holds the drift tests, `intervals` the metrics'
intervals (and a binary classifier's CBPE), `performance` the metrics on delayed labels per
task, `estimation`
the estimates before them beyond binary (multiclass CBPE, a regression's direct loss
estimation), `analysis` turns one window of one version into a `WindowReport`,
`monitor` runs every window of every served version (`reading` reduces the prediction
log into summaries, `feedback` reads the labels that join them, `reference` loads what a
version is compared against, and `cache` keeps unchanged windows' reports), `records` stores
the reports create-only, and `prometheus` and `page` publish them.
"""
