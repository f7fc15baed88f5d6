"""The libpyostree service (Starlette + uvicorn) on top of :mod:`libpyostree`.

So far: the ``pyostree`` console script and ``GET /api/v1/status``.
"""
