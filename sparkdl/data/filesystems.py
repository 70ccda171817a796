"""Data directories on any file system pyarrow reaches: one place that turns a ``dataDir`` into a pyarrow file system.

Accepted forms: a plain path, ``file://``, ``hdfs://``, ``s3://`` (also
Hadoop's ``s3a://`` and ``s3n://`` spellings), ``gs://``, ``abfs://`` /
``abfss://`` and ``dbfs:/`` (read through the ``/dbfs`` mount, as on
Databricks). pyarrow's own URI options apply, e.g.
``s3://bucket/dir?endpoint_override=host:9000&scheme=http&region=us-east-1``;
credentials come from the usual environment (``AWS_ACCESS_KEY_ID`` ...) or the
URI.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse

import pyarrow.fs as pafs

# Hadoop's spellings of schemes pyarrow knows under another name.
SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


def normalize(url: str) -> str:
    """``url`` as a URI pyarrow opens: plain paths become ``file://`` URIs, Hadoop scheme aliases pyarrow's."""
    scheme = urlparse(url).scheme
    if not scheme:
        return "file://" + os.path.abspath(url)
    if scheme == "dbfs":
        return "file:///dbfs/" + url[len("dbfs:"):].lstrip("/")
    if scheme in SCHEME_ALIASES:
        return SCHEME_ALIASES[scheme] + url[len(scheme):]
    return url


def open_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system of ``url`` and the path of ``url`` on it."""
    if not urlparse(url).scheme:
        return pafs.LocalFileSystem(), os.path.abspath(url)  # any characters, no URI quoting
    return pafs.FileSystem.from_uri(normalize(url))


def join(url: str, name: str) -> str:
    """``url`` with ``name`` appended to its path, its query (pyarrow's options) kept."""
    base, _, query = url.partition("?")
    return f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")


def filesystem_error(url: str) -> str | None:
    """Why pyarrow cannot open ``url`` here, or None when it can."""
    try:
        open_filesystem(url)
    except Exception as err:  # unknown scheme, a build without that file system, no HDFS client
        return f"{type(err).__name__}: {err}"
    return None


def redacted(text: str) -> str:
    """``text`` with the credentials of any ``scheme://user:secret@`` URL in it replaced by ``***``."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)
