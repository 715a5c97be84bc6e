"""The HTTP service: Starlette app, shared state in a database, L1/Redis caches, a job runner.

Entry points are :func:`catalytic.service.app.create_app` and the ``catalytic serve`` command.
"""
