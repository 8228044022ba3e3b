"""edXML (QCVN 102:2016) documents in and out of the HTTP API; see EDXML.md.

The package, one concern a module:

- ``scanner`` cuts a byte stream into markup and attachment content;
  ``b64`` decodes that content to disk; ``stream`` builds the hardened header tree
  and counts its limits; ``reader`` turns tree and contents into the ``model``;
  ``parse`` is the door in (a file, streaming; or bytes).
- ``dates`` reads and writes edXML dates; ``mapping`` maps a document onto Valise's
  routing fields; ``zips`` tells the SDK's ZIP wrapping and unzips bounded.
- ``skeleton`` reads a kept header back; ``made`` makes a header from Valise's facts;
  ``export`` writes the real layout with the attachments filled in.

Rules:
- Whatever a peer sends, the parsers raise :class:`EdxmlError` and nothing else.
- The sealed header part is the document as sent with attachment content emptied;
  exports fill it back, so the round trip is exact after canonicalisation.
"""

from gateway.bridges.edxml.dates import VIETNAM, parse_date, parse_datetime
from gateway.bridges.edxml.errors import EdxmlError, ZipBombError
from gateway.bridges.edxml.export import build_edxml, write_edxml
from gateway.bridges.edxml.limits import MAX_ATTACHMENTS, MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES
from gateway.bridges.edxml.made import PRIORITY_OUT, Facts
from gateway.bridges.edxml.mapping import (
    PRIORITY_IN,
    doc_class,
    dossier,
    expires,
    kind,
    originator,
    priority,
    wanted_organs,
)
from gateway.bridges.edxml.model import (
    Attachment,
    EdxmlDocument,
    Kind,
    Party,
    ReplacementInfo,
    ResponseFor,
)
from gateway.bridges.edxml.names import (
    HEADER_MEDIA_TYPE,
    HEADER_PART_NAME,
    MEDIA_TYPE,
    NS,
    PREFIX,
)
from gateway.bridges.edxml.parse import parse_edxml, parse_edxml_file
from gateway.bridges.edxml.skeleton import DeclaredPart, declared_parts, zipped_parts
from gateway.bridges.edxml.zips import (
    UnzippedEntry,
    check_zip,
    is_wrapped_zip,
    unzip_bounded,
)

__all__ = [
    "HEADER_MEDIA_TYPE",
    "HEADER_PART_NAME",
    "MAX_ATTACHMENTS",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_HEADER_BYTES",
    "MEDIA_TYPE",
    "NS",
    "PREFIX",
    "PRIORITY_IN",
    "PRIORITY_OUT",
    "VIETNAM",
    "Attachment",
    "DeclaredPart",
    "EdxmlDocument",
    "EdxmlError",
    "Facts",
    "Kind",
    "Party",
    "ReplacementInfo",
    "ResponseFor",
    "UnzippedEntry",
    "ZipBombError",
    "build_edxml",
    "check_zip",
    "declared_parts",
    "doc_class",
    "dossier",
    "expires",
    "is_wrapped_zip",
    "kind",
    "originator",
    "parse_date",
    "parse_datetime",
    "parse_edxml",
    "parse_edxml_file",
    "priority",
    "unzip_bounded",
    "wanted_organs",
    "write_edxml",
    "zipped_parts",
]
