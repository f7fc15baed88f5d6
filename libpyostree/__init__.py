"""libpyostree: a pure-Python OSTree toolkit.

Layers, from the bottom: :mod:`libpyostree.gvariant` (the GVariant codec),
:mod:`libpyostree.objects` (OSTree object formats and checksums),
:mod:`libpyostree.repo` (an archive-mode repository on disk), and on top of it
:mod:`libpyostree.walk`, :mod:`libpyostree.fsck`, :mod:`libpyostree.summary`,
:mod:`libpyostree.checkout` and :mod:`libpyostree.commit`.
"""

__version__ = "0.1.0"
