"""OSTree objects: formats, parsers, builders and checksums.

- :mod:`.metadata`: commit, dirtree, dirmeta, detached metadata, tombstones.
- :mod:`.content`: file headers, the canonical content stream, ``.filez``.
- :mod:`.summary`: the repository summary.
"""

from ._types import ObjectType
from .content import (
    FileHeader,
    FilezInfo,
    build_filez,
    content_checksum,
    filez_checksum,
    filez_object_checksum,
    iter_inflate,
    parse_file_header,
    parse_filez,
    read_filez,
)
from .metadata import (
    COMMIT_TYPE,
    DIRMETA_TYPE,
    DIRTREE_TYPE,
    EMPTY_DIRTREE_CHECKSUM,
    MAX_METADATA_SIZE,
    Commit,
    DirMeta,
    DirTree,
    build_commitmeta,
    build_tombstone,
    metadata_checksum,
    parse_commit,
    parse_commitmeta,
    parse_dirmeta,
    parse_dirtree,
    parse_tombstone,
)
from .summary import SUMMARY_TYPE, Summary, SummaryRef, build_summary, parse_summary

__all__ = [
    "COMMIT_TYPE",
    "DIRMETA_TYPE",
    "DIRTREE_TYPE",
    "EMPTY_DIRTREE_CHECKSUM",
    "MAX_METADATA_SIZE",
    "SUMMARY_TYPE",
    "Commit",
    "DirMeta",
    "DirTree",
    "FileHeader",
    "FilezInfo",
    "ObjectType",
    "Summary",
    "SummaryRef",
    "build_commitmeta",
    "build_filez",
    "build_summary",
    "build_tombstone",
    "content_checksum",
    "filez_checksum",
    "filez_object_checksum",
    "iter_inflate",
    "metadata_checksum",
    "parse_commit",
    "parse_commitmeta",
    "parse_dirmeta",
    "parse_dirtree",
    "parse_file_header",
    "parse_filez",
    "parse_summary",
    "parse_tombstone",
    "read_filez",
]
