"""星河精密's inventory as an MCP server over stdio (the server-side tool of tools.yaml).

The gateway starts it once per deployment version (`command: python`, `args: [this file]`)
and offers its tools to the model; try it alone with `python examples/deploy/inventory_mcp.py`
(it then waits for MCP messages on stdin). Replace the dictionary with a query to your ERP.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

STOCK = {"XH-S200": 1240, "XH-CNC-500": 3, "XH-T10": 0}
LEAD_DAYS = {"XH-S200": 2, "XH-CNC-500": 45, "XH-T10": 20}

app = MCPServer("xinghe-inventory")


@app.tool()
def stock(product: str) -> str:
    """Units of a product (XH-S200, XH-CNC-500, XH-T10) in the Suzhou warehouse."""
    if product not in STOCK:
        raise ToolError(f"unknown product {product!r}; products: {', '.join(STOCK)}")
    return f"{product}: {STOCK[product]} units in stock"


@app.tool()
def lead_time(product: str) -> str:
    """Working days from order to delivery for a product."""
    if product not in LEAD_DAYS:
        raise ToolError(f"unknown product {product!r}; products: {', '.join(LEAD_DAYS)}")
    return f"{product}: delivered {LEAD_DAYS[product]} working days after the order"


if __name__ == "__main__":
    app.run()
