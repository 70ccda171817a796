"""Data directories on any file system pyarrow reaches: one place that turns a ``dataDir`` into a pyarrow file system.

Accepted forms: a plain path, ``file://``, ``hdfs://``, ``s3://`` (also
Hadoop's ``s3a://`` and ``s3n://`` spellings), ``gs://``, ``abfs://`` /
``abfss://`` and ``dbfs:/`` (read through the ``/dbfs`` mount, as on
Databricks). pyarrow's own URI options apply, e.g.
``s3://bucket/dir?endpoint_override=host:9000&scheme=http&region=us-east-1``.

A plain path is taken literally, whatever characters it holds; a URI is a
URI: pyarrow decodes its percent-escapes and reads ``?`` as the start of its
options. A URI with a fragment (``#``) is refused, as pyarrow would drop
everything from the ``#`` on and the data would land in the directory above.
Credentials never go in the URI (sparkneural saves its Params with every model,
and tools such as MLflow's autologging record them): they come from the
environment or the instance.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

# Hadoop's spellings of schemes pyarrow knows under another name.
SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
# Schemes read through the local file system: they have no options, so a "?" there is part of a name.
LOCAL_SCHEMES = ("file", "dbfs")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Query options of pyarrow's file systems that carry a credential: s3's access_key, secret_key and
# session_token, abfs's account_key, client_secret and sas_token, a SAS signature's sig.
_SECRET_OPTION = re.compile(r"key|secret|token|passw|^sig$", re.IGNORECASE)
# "user:secret@" where a "/" in the secret (common in AWS secret keys) ends the URI's authority early;
# "host:8020/" is a port.
_RAW_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@:]*:(?!\d*(/|$))[^?#]*@", re.IGNORECASE)
CREDENTIALS_HINT = ("give credentials through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; "
                    "GOOGLE_APPLICATION_CREDENTIALS; AZURE_STORAGE_ACCOUNT_KEY) or the instance's own credentials "
                    "(an instance profile, a managed identity)")


def scheme(url: str) -> str:
    """The URI scheme of ``url`` in lower case (as ``urlsplit`` finds it); ``""`` for a plain path."""
    found = _SCHEME.match(url)
    return found[1].lower() if found else ""


def normalize(url: str) -> str:
    """``url`` as a URI pyarrow opens at the same place (for readers that take only URIs).

    A plain path becomes the percent-encoded ``file://`` URI of its absolute
    path, ``dbfs:/`` the ``/dbfs`` mount, Hadoop's scheme aliases pyarrow's
    names; any other URI is returned as given.
    """
    found = scheme(url)
    if not found:
        return pathlib.Path(os.path.abspath(url)).as_uri()
    if found == "dbfs":
        return "file:///dbfs/" + url[len("dbfs:"):].lstrip("/")
    if found in SCHEME_ALIASES:
        return SCHEME_ALIASES[found] + url[len(found):]
    return url


def open_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system of ``url`` (a plain path or any accepted URI) and the path of ``url`` on it.

    Raises ValueError for a URI that would not name the place it spells (``uri_problem``).
    """
    if not scheme(url):
        return pafs.LocalFileSystem(), os.path.abspath(url)  # any characters, no URI parsing
    problem = uri_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return pafs.FileSystem.from_uri(normalize(url))


def uri_problem(url: str) -> str | None:
    """Why pyarrow would open a place other than the one ``url`` spells: a fragment, or a query on a local scheme."""
    found = scheme(url)
    if found and "#" in url:
        return ("found '#' in a URI, where pyarrow drops everything from it on and would use the directory above; "
                "write it as %23, or give a plain path")
    if found in LOCAL_SCHEMES and "?" in url:
        return f"found '?' in a {found}: URI, which has no options; write it as %3F, or give a plain path"
    return None


def join(url: str, name: str) -> str:
    """``url`` with the plain ``name`` appended to its path; ``open_filesystem`` finds it under ``url``'s directory.

    A plain path is joined as a path; in a URI, ``name`` goes before the query (pyarrow's options).
    """
    if not scheme(url):
        return os.path.join(url, name)
    base, mark, query = url.partition("?")
    return f"{base.rstrip('/')}/{name}{mark}{query}"


def credential_problem(url: str) -> str | None:
    """What credential ``url`` holds (named, never shown), or None."""
    if not scheme(url):
        return None
    userinfo = "a user name or key before '@'"
    if _RAW_USERINFO.match(url):
        return userinfo
    try:
        parts = urlsplit(url.partition("#")[0])
    except ValueError:  # e.g. an unclosed "[": pyarrow refuses it later, and the message is redacted
        return None
    user, at, _ = parts.netloc.rpartition("@")
    # abfs(s)://container@account... names the container there; only a password after it is a secret.
    if at and (":" in user or scheme(url) not in ("abfs", "abfss")):
        return userinfo
    secrets = sorted({key for key, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_OPTION.search(key)})
    if secrets:
        return f"the option{'s' if len(secrets) > 1 else ''} {', '.join(secrets)}"
    return None


def redacted(text: str) -> str:
    """``text`` with the credentials of any ``scheme://user:secret@`` URL, and any credential option's value, replaced by ``***``."""
    text = re.sub(r"(\w+://)[^@\s?#]+@", r"\1***@", text)
    return re.sub(r"([?&])([^=&#\s]+)=([^&#\s]*)", lambda m: f"{m[1]}{m[2]}=***" if _SECRET_OPTION.search(m[2]) else m[0], text)


def check_url(name: str, url: str) -> None:
    """Refuse, naming the Param (or conf) ``name``, a location that holds a credential or a fragment."""
    problem = credential_problem(url)
    if problem is not None:
        raise ValueError(f"{name}: expected a location without credentials, found {problem} in {redacted(url)!r}; "
                         f"sparkneural saves {name} with the model and tools such as MLflow record it, so {CREDENTIALS_HINT}")
    problem = uri_problem(url)
    if problem is not None:
        raise ValueError(f"{name}: expected a path, or a URI that names the directory it spells; {problem}: {redacted(url)!r}")


def location_converter(name: str) -> Callable[[Any], str | None]:
    """The type converter of a directory Param: a string, refused when it is set if it holds a credential or a fragment."""

    def convert(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a path or a URI string, found {type(value).__name__}")
        check_url(name, value)
        return value

    convert.__name__ = "to_location"
    return convert


def check_location(name: str, url: str | None) -> None:
    """The constraint of a directory Param (None passes): what ``check_url`` refuses, or a location pyarrow cannot open here.

    It resolves ``url`` with ``open_filesystem``, as the fit does.
    """
    if url is None:
        return
    check_url(name, url)
    error = filesystem_error(url)
    if error is not None:
        raise ValueError(f"{name}: expected a path or a URL that pyarrow opens (file, hdfs, s3, s3a, gs, abfs, abfss, dbfs), "
                         f"found {redacted(url)!r} ({redacted(error)})")


def filesystem_error(url: str) -> str | None:
    """Why pyarrow cannot open ``url`` here, or None when it can."""
    try:
        open_filesystem(url)
    except Exception as err:  # unknown scheme, a build without that file system, no HDFS client
        return f"{type(err).__name__}: {err}"
    return None


def is_file(url: str) -> bool:
    """Whether ``url`` names an existing file (not a directory)."""
    fs, path = open_filesystem(url)
    return fs.get_file_info(path).type == pafs.FileType.File
