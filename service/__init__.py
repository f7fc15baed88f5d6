"""The libpyostree service (Starlette + uvicorn) on top of :mod:`libpyostree`: repositories
with immutable versions, uploads, remotes and sync, distributions serving any version to
``ostree pull``, and the ``pyostree`` console script (see ``docs/service.md``).
"""
