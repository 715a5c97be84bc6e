"""Webhook management routes, one module per resource; :mod:`catalytic.webhooks.api` lists them all in one table."""
