"""The exception tree of libpyostree.

Every error the library raises on bad data or misuse derives from :class:`OstreeError`::

    OstreeError
    ├── GVariantError (ValueError)        bytes that are not valid/normal GVariant of the type,
    │                                     or a value that cannot be encoded as that type
    ├── InvalidNameError (ValueError)     a bad file name, ref name or checksum string
    ├── CorruptObjectError                an object whose bytes fail checksum or structure checks
    ├── ObjectNotFoundError (KeyError)    an object that is not in the repository
    ├── RefNotFoundError (KeyError)       a ref or revision that does not resolve
    ├── RefConflictError                  compare-and-swap ref update lost the race
    └── RepoError                         a repository that cannot be opened or used (config, mode)

Errors about data (corrupt, non-normal, missing) are distinct from errors about
misuse (bad names passed by the caller), following h11's local/remote split.
"""

from __future__ import annotations


class OstreeError(Exception):
    """Root of every libpyostree error."""


class GVariantError(OstreeError, ValueError):
    """Serialized GVariant data that is invalid, or not in normal form when strict.

    ``offset`` is the absolute byte offset in the decoded buffer where the problem
    was found (``None`` for encoding errors).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")


class InvalidNameError(OstreeError, ValueError):
    """A file name, ref name, remote name or checksum string that ostree would reject."""


class CorruptObjectError(OstreeError):
    """An object whose bytes do not match its name or do not have a valid structure."""

    def __init__(
        self,
        message: str,
        *,
        checksum: str | None = None,
        objtype: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        self.checksum = checksum
        self.objtype = objtype
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class ObjectNotFoundError(OstreeError, KeyError):
    """An object that the repository does not hold."""

    def __init__(self, checksum: str, objtype: str) -> None:
        self.checksum = checksum
        self.objtype = objtype
        super().__init__(f"No such {objtype} object {checksum}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RefNotFoundError(OstreeError, KeyError):
    """A ref or revision expression that does not resolve."""

    def __str__(self) -> str:
        return str(self.args[0])


class RefConflictError(OstreeError):
    """A compare-and-swap ref update found a different current value."""

    def __init__(self, ref: str, expected: str | None, actual: str | None) -> None:
        self.ref = ref
        self.expected = expected
        self.actual = actual
        super().__init__(f"Ref {ref} is at {actual or '(none)'}, expected {expected or '(none)'}")


class RepoError(OstreeError):
    """A repository that cannot be opened or used: missing or garbage config, wrong mode."""
