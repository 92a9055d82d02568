"""A small MCP server over stdio for the gateway's tool tests: the 星河精密 parts inventory.

Run by the gateway as `python tests/serve/mcp_inventory.py`. Tools: `stock(part)` (units in
the warehouse), `reorder(part)` (always fails: the ERP is offline), `slow(seconds)`. With
INVENTORY_PID_FILE set it writes its process id there (the tests check it is stopped on swap
and shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

STOCK = {"S200": 17, "S300": 0, "T-90": 240}

app = MCPServer("xinghe-inventory")


@app.tool()
def stock(part: str) -> str:
    """Units of a part (e.g. S200) in the Suzhou warehouse."""
    if part not in STOCK:
        raise ToolError(f"unknown part {part!r}; parts: {', '.join(sorted(STOCK))}")
    return f"{part}: {STOCK[part]} units in Suzhou"


@app.tool()
def reorder(part: str) -> str:
    """Order more of a part from the supplier."""
    raise ToolError("the ERP system is offline")


@app.tool()
async def slow(seconds: float) -> str:
    """Answers after `seconds` seconds."""
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # tool errors are results, not server noise in test logs
    pid_file = os.environ.get("INVENTORY_PID_FILE")
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    app.run()
