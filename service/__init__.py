"""The libpyostree service (Starlette + uvicorn). Built on top of :mod:`libpyostree`; not yet implemented."""
