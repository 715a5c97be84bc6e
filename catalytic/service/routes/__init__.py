"""HTTP routes, one module per resource; :mod:`catalytic.service.app` lists them all in one table."""
