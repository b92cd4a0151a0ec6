"""URLs: where a configured feed lives, and the one canonical form of an article's link.

The same story reaches us as ``https://Example.com/a?utm_source=rss#top`` from one feed
and ``https://example.com/a`` from another; both must hash to the same article id, so
the canonical form drops tracking parameters and fragments, lower-cases the host and
removes default ports. Everything else (path case, the order of the remaining query
parameters) is kept: servers may treat it as meaningful.

>>> canonical_url("HTTPS://Example.COM:443/a/b?utm_source=x&id=7#frag")
'https://example.com/a/b?id=7'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
        "mc_cid", "mc_eid", "ref", "ref_src", "ref_url", "referrer", "_hsenc", "_hsmi", "mkt_tok",
        "cmpid", "ncid", "ocid", "sr_share", "spm", "rss", "feed", "xtor", "at_medium", "at_campaign",
    }
)  # fmt: skip
"""Query parameters that only identify the click, never the document."""

TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "oly_", "vero_")
"""Any query parameter starting with one of these is a tracker (``utm_source``, ``pk_kwd``)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_tracking_param(name: str) -> bool:
    lower = name.lower()
    return lower in TRACKING_PARAMS or lower.startswith(TRACKING_PREFIXES)


def canonical_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of ``url`` (resolved against ``base``), or None if it is not http(s).

    Idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``.
    """
    url = url.strip()
    if not url:
        return None
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        host = host.lower()
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = _normalise_path(parts.path) or "/"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_param(k)],
        quote_via=quote,
        safe="/:@!$'()*,;~",
    )
    return urlunsplit((scheme, netloc, path, query, ""))


def _normalise_path(path: str) -> str:
    """Percent-encoding in one fixed form, so encoded and plain spellings of a path agree."""
    return quote(unquote(path), safe="/:@!$&'()*+,;=~")


def url_host(url: str) -> str:
    """The lower-cased host of ``url`` without ``www.``; empty for file URLs and junk."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""
    return host.removeprefix("www.")


def resolve_feed_url(url: str, base_dir: Path) -> str:
    """A configured feed location as a URL: http(s) and file URLs as given, a plain path
    (relative to the config directory ``base_dir``) as a ``file://`` URL."""
    if "://" in url:
        return url
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    return path.as_uri()


def stable_id(*parts: str) -> str:
    """A short stable hash of ``parts``: the article id of a canonical URL, GUID or title."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:32]
