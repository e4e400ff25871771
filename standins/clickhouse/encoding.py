"""HTTP bodies: the compressed request bodies clickhouse-connect sends, and each output
format's Content-Type."""

from __future__ import annotations

import gzip
import sys
import zlib

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

try:
    import lz4.frame as lz4_frame
except ImportError:  # clickhouse-connect sends lz4 only when it has lz4 itself
    lz4_frame = None

from standins.clickhouse.errors import ClickHouseError

BINARY_FORMATS = ("native", "rowbinary", "arrow", "parquet", "orc", "avro", "protobuf", "capnproto",
                  "msgpack", "npy", "bson")


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        return zstd.decompress(body)
    if encoding == "lz4" and lz4_frame is not None:
        # clickhouse-connect sends one lz4 frame per block; the decompressor stops after each.
        parts = []
        while body:
            frame = lz4_frame.LZ4FrameDecompressor()
            parts.append(frame.decompress(body))
            body = frame.unused_data
        return b"".join(parts)
    raise ClickHouseError(36, f"Unknown HTTP Content-Encoding: {encoding}", "BAD_ARGUMENTS")


def content_type(fmt: str) -> str:
    lower = fmt.lower()
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return f"text/csv; charset=UTF-8; header={'present' if 'withnames' in lower else 'absent'}"
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith(BINARY_FORMATS):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body, as ClickHouse reads them: `query` and
    `param_<name>` (clickhouse-connect sends bound parameters this way once they are too long for
    the URL). A part with a file name is external data, which the stand-in does not support."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {}
    for part in message.iter_parts():
        if part.get_filename():
            raise ClickHouseError(48, "external data (a file part in a multipart request) is not supported by the"
                                  " chDB stand-in", "NOT_IMPLEMENTED")
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = part.get_payload(decode=True).decode("utf-8")
    return fields
