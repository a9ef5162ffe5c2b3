"""Monitoring of served versions: the prediction log and delayed labels, window by window.

`logs` reads the logs, `statistics` holds the tests and estimators, `analysis`
turns one window of one version into a `WindowReport`, `monitor` runs every
window of every served version, `records` stores the reports create-only, and
`prometheus` and `page` publish them.
"""
