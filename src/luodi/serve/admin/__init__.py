"""/admin: teams, keys, deployments, usage, feedback and request logs."""
