"""/v1/feedback."""
