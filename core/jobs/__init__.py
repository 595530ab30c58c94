"""The job engine: scripts run on hosts, dispatch, monitoring, parsing of progress and results."""
