"""Monitoring: service signals over time, prompt drift, alert rules and the monitoring report.

- `signals`: requests, errors, latency, tokens, guard blocks and feedback per deployment and
  model version over a window (and per time bucket);
- `drift`: recent prompts against the training data (centroid distance with a sampling-noise
  baseline) and against a knowledge base (out-of-domain rate);
- `rules`: alert rules (YAML) and `check`, run by `luodi monitor check` and by the gateway;
- `watch`: the gateway's periodic check, shown on /metrics (`config.MonitorConfig`);
- `report`: the self-contained HTML page (and JSON) with the signals over time, drift and the
  ROI view (requests, tokens, cost per request, feedback score).

Nothing is imported here: the gateway's settings import `luodi.monitor.config` alone.
"""
