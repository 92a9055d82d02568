"""Server-side tools: HTTP endpoints and MCP servers a deployment offers its model, run by the
gateway in a bounded loop (`loop.run_tools`). See `spec` for the YAML, `box` for the calls."""
