"""The SSRF guard: a webhook URL may only lead to a public address on the internet.

Customers choose the URLs our functions POST to; without this guard one could make them reach the platform's own
network (the instance metadata service at 169.254.169.254, a database in the VPC, a service on localhost). Every
delivery resolves the host, refuses it if ANY of its addresses is not a public one, and then connects to the address
it checked (``Target.address``), never resolving again: a DNS answer that changes between the check and the connect
(DNS rebinding) cannot slip a private address in.

Refused: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with the metadata service, fe80::/10),
multicast, reserved, unspecified, shared (100.64/10), IPv4-mapped IPv6 addresses, 6to4 and NAT64 addresses that
embed a refused IPv4 address, and every other address Python's ``ipaddress`` does not call global (documentation,
benchmarking ranges...). Numeric host spellings that resolvers accept (``2130706433``, ``0177.0.0.1``, ``0x7f.1``)
are read as the addresses they are. Outside the local and test stages only https and the ports 80, 443 and 8443;
loopback only with ``settings.webhook_allow_loopback`` in the local and test stages (receivers on localhost for the
tests and ``make dev``), never in dev or prod.

Resolution is bounded (``DNS_TIMEOUT_S``, and never longer than the caller's own timeout): getaddrinfo has no
timeout of its own and a resolver that does not answer would hold a delivery's thread (and its endpoint's slot) for
as long as the system's resolver retries. It runs in a thread of its own; past the bound the host is refused for this
attempt ("no DNS answer"), and the thread is left to finish (a daemon: it never holds the process up).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit

from observai.config import Settings, get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the host's addresses as strings; the default is getaddrinfo. Tests pass their own (a name that
# resolves differently on each call) to show that the connection goes to the checked address.
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_PORTS = frozenset({80, 443, 8443})
DNS_TIMEOUT_S = 5.0
MAX_URL_LENGTH = 2048
_DEVELOPMENT_STAGES = ("local", "test")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar, "/" and "%" (escapes already there)

_METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeTarget(Exception):
    """A URL the guard refuses; ``reason`` says why in words fit for the API's 422 and the delivery log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to ``address`` (the checked IP), send ``host`` as Host and TLS server name."""

    scheme: str
    host: str  # the URL's host, lower case, IDNA-encoded; an IP literal without brackets
    port: int
    address: str  # the checked IP address to connect to
    path: str = "/"  # path and query, as sent in the request line
    addresses: tuple[str, ...] = ()  # every checked address of the host (``address`` first)


@dataclass(frozen=True)
class _Parsed:
    scheme: str
    host: str
    port: int
    path: str
    literal: IPAddress | None  # the host, if it is an IP address in any spelling


def _development(settings: Settings) -> bool:
    return settings.stage in _DEVELOPMENT_STAGES


def parse_ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a host written as inet_aton reads it (``2130706433``, ``0177.0.0.1``, ``0x7f.1``), else
    None. Resolvers (glibc's getaddrinfo, browsers) accept these spellings; so must the guard, to refuse them."""
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # a trailing dot (a fully qualified name) changes nothing
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                value = int(part[2:], 16) if len(part) > 2 else 0
            elif len(part) > 1 and part.startswith("0"):
                value = int(part[1:], 8)
            else:
                if not part.isdigit():
                    return None
                value = int(part, 10)
        except ValueError:
            return None
        numbers.append(value)
    # a.b.c.d: bytes; a.b.c: c fills 16 bits; a.b: b fills 24 bits; a: all 32 bits.
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _literal(host: str) -> IPAddress | None:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])  # a zone index (fe80::1%eth0) names no other address
        except ValueError:
            return None
    return parse_ipv4_number(host)


def _parse(url: str, settings: Settings) -> _Parsed:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeTarget("URL contains spaces or control characters")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeTarget("scheme must be https" if not _development(settings) else "scheme must be http or https")
    if scheme != "https" and not _development(settings):
        raise UnsafeTarget("scheme must be https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("credentials in the URL are not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeTarget("URL has no host")
    literal = _literal(host)
    if literal is None:
        if ":" in host or "[" in host or "]" in host:
            raise UnsafeTarget("not a valid IPv6 address")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsafeTarget("not a valid host name") from None
        if any(not (c.isalnum() or c in "-._") for c in host):
            raise UnsafeTarget("not a valid host name")
    if port is None:
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise UnsafeTarget("port 0 not allowed")
    if not _development(settings) and port not in ALLOWED_PORTS:
        raise UnsafeTarget(f"port {port} not allowed (only 80, 443 and 8443)")
    # As sent in the request line: ASCII only, so characters beyond it are percent-encoded (what a browser does);
    # what is already encoded stays as it is.
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    return _Parsed(scheme, str(literal) if literal is not None else host, port, path, literal)


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why the guard refuses to connect to ``address`` (e.g. "loopback address 127.0.0.1"), or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"IPv4-mapped IPv6 address {address}"
        embedded = address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and address_refusal(embedded) is not None:
            return f"IPv6 address {address} embeds the refused address {embedded}"
    if address in _METADATA_ADDRESSES:
        return f"cloud metadata address {address}"
    if address.is_unspecified:
        return f"unspecified address {address}"
    if address.is_loopback:
        return None if allow_loopback else f"loopback address {address}"
    if address.is_link_local:
        return f"link-local address {address}"
    if address.is_multicast:
        return f"multicast address {address}"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return f"shared address space {address}"
    if address.is_reserved:  # before private: Python counts 240.0.0.0/4 as both
        return f"reserved address {address}"
    if address.is_private:
        return f"private address {address}"
    if not address.is_global:
        return f"non-public address {address}"
    return None


def _allow_loopback(settings: Settings) -> bool:
    # The setting counts only where it is meant to: a deployment that sets it by mistake still refuses loopback.
    return settings.webhook_allow_loopback and _development(settings)


def validate_url_syntax(url: str, *, settings: Settings | None = None) -> None:
    """Refuse (UnsafeTarget) what can be refused without DNS: scheme, credentials, port, an IP literal's class.

    For the API's 422 at creation; ``check_url`` does all of it again, and the DNS part, at every delivery."""
    settings = settings or get_settings()
    parsed = _parse(url, settings)
    if parsed.literal is not None:
        reason = address_refusal(parsed.literal, allow_loopback=_allow_loopback(settings))
        if reason is not None:
            raise UnsafeTarget(reason)


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _resolve_within(resolve: Resolver, host: str, port: int, timeout_s: float) -> Sequence[str]:
    """``resolve(host, port)`` in a daemon thread, waited for at most ``timeout_s``; UnsafeTarget past that."""
    outcome: list[Sequence[str] | BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(resolve(host, port))
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="webhook-dns", daemon=True).start()
    if not done.wait(timeout_s):
        raise UnsafeTarget(f"host {host}: no DNS answer within {timeout_s:g} s")
    answer = outcome[0]
    if isinstance(answer, BaseException):
        raise answer
    return answer


def check_url(
    url: str,
    *,
    settings: Settings | None = None,
    resolve: Resolver | None = None,
    resolve_timeout_s: float = DNS_TIMEOUT_S,
) -> Target:
    """The checked target of ``url``: refused (UnsafeTarget) if any address the host resolves to is not public, or
    if the host has no DNS answer within ``resolve_timeout_s``."""
    settings = settings or get_settings()
    parsed = _parse(url, settings)
    if parsed.literal is not None:
        candidates: list[IPAddress] = [parsed.literal]
    else:
        try:
            answers = _resolve_within(resolve or _getaddrinfo, parsed.host, parsed.port, resolve_timeout_s)
        except (OSError, UnicodeError) as exc:
            raise UnsafeTarget(f"host {parsed.host} does not resolve ({exc})") from None
        candidates = []
        for answer in answers:
            try:
                candidates.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise UnsafeTarget(f"host {parsed.host} resolves to {answer!r}, not an address") from None
        if not candidates:
            raise UnsafeTarget(f"host {parsed.host} does not resolve")
    for candidate in candidates:
        reason = address_refusal(candidate, allow_loopback=_allow_loopback(settings))
        if reason is not None:
            # Any refused address refuses the host: otherwise a name with one public and one private address would
            # reach the private one whenever the connection happened to pick it.
            raise UnsafeTarget(reason if parsed.literal is not None else f"host {parsed.host} resolves to {reason}")
    # IPv4 first: every Lambda has IPv4 egress, not every one IPv6; the resolver's order otherwise.
    ordered = sorted(dict.fromkeys(candidates), key=lambda a: a.version)
    addresses = tuple(str(a) for a in ordered)
    return Target(parsed.scheme, parsed.host, parsed.port, addresses[0], parsed.path, addresses)
