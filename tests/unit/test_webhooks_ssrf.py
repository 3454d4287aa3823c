"""The SSRF guard: every address class it refuses, numeric spellings, names that resolve to them, ports, schemes."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from observai.config import Settings
from observai.webhooks.ssrf import UnsafeTarget, check_url, parse_ipv4_number, validate_url_syntax

PROD = Settings(stage="prod")
TEST = Settings(stage="test")
TEST_LOOPBACK = Settings(stage="test", webhook_allow_loopback=True)


def resolver(table: dict[str, Sequence[str]]):
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


PUBLIC = resolver({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/", "loopback address 127.0.0.1"),
        ("https://127.8.9.10/", "loopback address 127.8.9.10"),
        ("https://[::1]/", "loopback address ::1"),
        ("https://2130706433/", "loopback address 127.0.0.1"),  # decimal
        ("https://0177.0.0.1/", "loopback address 127.0.0.1"),  # octal
        ("https://0x7f.1/", "loopback address 127.0.0.1"),  # hex, two parts
        ("https://0x7f000001/", "loopback address 127.0.0.1"),
        ("https://127.1/", "loopback address 127.0.0.1"),
        ("https://[::ffff:127.0.0.1]/", "IPv4-mapped IPv6 address"),
        ("https://[::ffff:8.8.8.8]/", "IPv4-mapped IPv6 address"),  # mapped at all: refused
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata address 169.254.169.254"),
        ("https://[fd00:ec2::254]/", "cloud metadata address fd00:ec2::254"),
        ("https://169.254.10.1/", "link-local address 169.254.10.1"),
        ("https://[fe80::1]/", "link-local address fe80::1"),
        ("https://10.0.0.5/", "private address 10.0.0.5"),
        ("https://172.16.3.4/", "private address 172.16.3.4"),
        ("https://192.168.1.1/", "private address 192.168.1.1"),
        ("https://012.0.0.5/", "private address 10.0.0.5"),  # octal spelling of a private address
        ("https://[fd12:3456::1]/", "private address fd12:3456::1"),
        ("https://100.64.0.1/", "shared address space 100.64.0.1"),
        ("https://100.127.255.254/", "shared address space 100.127.255.254"),
        ("https://224.0.0.1/", "multicast address 224.0.0.1"),
        ("https://[ff02::1]/", "multicast address ff02::1"),
        ("https://0.0.0.0/", "unspecified address 0.0.0.0"),
        ("https://0/", "unspecified address 0.0.0.0"),
        ("https://[::]/", "unspecified address ::"),
        ("https://240.0.0.1/", "reserved address 240.0.0.1"),
        ("https://255.255.255.255/", "255.255.255.255"),
        ("https://192.0.2.7/", "192.0.2.7"),  # documentation range: not global
        ("https://[2002:7f00:1::]/", "embeds the refused address 127.0.0.1"),  # 6to4 of loopback
        ("https://[64:ff9b::a00:1]/", "embeds the refused address 10.0.0.1"),  # NAT64 of a private address
    ],
)
def test_every_non_public_address_is_refused(url: str, reason: str) -> None:
    # Given a URL whose host is (a spelling of) a non-public address
    # When it is checked, with and without DNS, in a deployment and in a test stage with loopback not allowed
    for check in (
        lambda: check_url(url, settings=PROD),
        lambda: validate_url_syntax(url, settings=PROD),
        lambda: check_url(url.replace("https://", "http://"), settings=TEST),
    ):
        # Then it is refused, saying why
        with pytest.raises(UnsafeTarget) as refused:
            check()
        assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.0x1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.258", "10.1.1.2"),
        ("3232235777", "192.168.1.1"),
        ("8.8.8.8.", "8.8.8.8"),
    ],
)
def test_numeric_spellings_are_read_like_inet_aton(spelling: str, address: str) -> None:
    assert str(parse_ipv4_number(spelling)) == address


@pytest.mark.parametrize("name", ["example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "0x1g", "1..2", "4294967296"])
def test_names_and_out_of_range_numbers_are_not_addresses(name: str) -> None:
    assert parse_ipv4_number(name) is None


def test_a_public_name_passes_and_connects_to_its_checked_ipv4_address_first() -> None:
    target = check_url("https://Hooks.Example.com/a/b?x=1", settings=PROD, resolve=PUBLIC)
    assert (target.scheme, target.host, target.port, target.path) == ("https", "hooks.example.com", 443, "/a/b?x=1")
    assert target.address == "93.184.215.14"
    assert target.addresses == ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    # Given a name resolving to a public and a private address (a connection might pick either)
    resolve = resolver({"mixed.example.com": ["93.184.215.14", "10.1.2.3"]})
    # Then the name is refused
    with pytest.raises(UnsafeTarget, match=r"host mixed.example.com resolves to private address 10.1.2.3"):
        check_url("https://mixed.example.com/", settings=PROD, resolve=resolve)


def test_a_name_resolving_to_the_metadata_service_is_refused() -> None:
    resolve = resolver({"metadata.attacker.example": ["169.254.169.254"]})
    with pytest.raises(UnsafeTarget, match="cloud metadata address"):
        check_url("https://metadata.attacker.example/", settings=PROD, resolve=resolve)


def test_localhost_is_refused_without_the_setting_and_allowed_with_it() -> None:
    # Given the real resolver and the name localhost (loopback)
    # Then without webhook_allow_loopback it is refused, as loopback
    with pytest.raises(UnsafeTarget, match="host localhost resolves to loopback address"):
        check_url("http://localhost:8080/hook", settings=TEST)
    # And with it, allowed, to a loopback address
    target = check_url("http://localhost:8080/hook", settings=TEST_LOOPBACK)
    assert target.address in ("127.0.0.1", "::1") and target.port == 8080
    # But the setting allows loopback only: private and metadata addresses stay refused
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(UnsafeTarget):
            check_url(url, settings=TEST_LOOPBACK)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        check_url("https://nowhere.example.com/", settings=PROD, resolve=resolver({}))


def test_a_resolver_that_never_answers_is_given_up_on_in_bounded_time() -> None:
    # Given a resolver that blocks (a DNS server that does not answer)
    unblock = threading.Event()
    asked: list[str] = []

    def silent(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        unblock.wait(30)
        return ["93.184.215.14"]

    try:
        # When a URL on that name is checked with a bound of 0.3 s
        started = time.monotonic()
        with pytest.raises(UnsafeTarget, match=r"host slow.example.com: no DNS answer within 0.3 s"):
            check_url("https://slow.example.com/", settings=PROD, resolve=silent, resolve_timeout_s=0.3)
        # Then the check gave up after the bound, not when the resolver would have answered
        assert asked == ["slow.example.com"]
        assert 0.25 <= time.monotonic() - started < 2
    finally:
        unblock.set()


def test_a_resolver_answering_within_the_bound_is_used() -> None:
    # Given a resolver that answers after 50 ms
    def slowish(host: str, port: int) -> Sequence[str]:
        time.sleep(0.05)
        return ["93.184.215.14"]

    # When a URL on that name is checked with a bound of 2 s
    target = check_url("https://hooks.example.com/", settings=PROD, resolve=slowish, resolve_timeout_s=2)
    # Then its answer is the target; a resolver's error is still "does not resolve"
    assert target.address == "93.184.215.14"
    with pytest.raises(UnsafeTarget, match=r"does not resolve \(unknown host"):
        check_url("https://nowhere.example.com/", settings=PROD, resolve=resolver({}), resolve_timeout_s=2)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/", "scheme must be https"),
        ("ftp://hooks.example.com/", "scheme must be https"),
        ("file:///etc/passwd", "scheme must be https"),
        ("gopher://hooks.example.com/", "scheme must be https"),
        ("https://hooks.example.com:22/", "port 22 not allowed"),
        ("https://hooks.example.com:6379/", "port 6379 not allowed"),
        ("https://hooks.example.com:5432/", "port 5432 not allowed"),
        ("https://user:pw@hooks.example.com/", "credentials in the URL"),
        ("https:///nohost", "URL has no host"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks example.com/", "spaces or control characters"),
        ("https://hooks.example.com/\r\nX: y", "spaces or control characters"),
        ("https://" + "a" * 2050 + ".com/", "longer than 2048"),
    ],
)
def test_deployments_allow_only_https_on_80_443_8443(url: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget, match=reason):
        validate_url_syntax(url, settings=PROD)
    with pytest.raises(UnsafeTarget, match=reason):
        check_url(url, settings=PROD, resolve=PUBLIC)


@pytest.mark.parametrize("port", [80, 443, 8443])
def test_the_allowed_ports_pass(port: int) -> None:
    assert check_url(f"https://hooks.example.com:{port}/", settings=PROD, resolve=PUBLIC).port == port


def test_test_stages_allow_http_and_any_port() -> None:
    target = check_url("http://hooks.example.com:9000/x", settings=TEST, resolve=PUBLIC)
    assert (target.scheme, target.port) == ("http", 9000)
    with pytest.raises(UnsafeTarget, match="scheme must be http or https"):
        check_url("ftp://hooks.example.com/", settings=TEST, resolve=PUBLIC)


def test_syntax_validation_does_not_resolve() -> None:
    # Given a name no resolver knows: the syntax check (at creation) accepts it; the delivery check refuses it
    validate_url_syntax("https://not-yet-in-dns.example.com/", settings=PROD)
    with pytest.raises(UnsafeTarget):
        check_url("https://not-yet-in-dns.example.com/", settings=PROD, resolve=resolver({}))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_deployments_refuse_loopback_even_with_the_setting(stage: str) -> None:
    settings = Settings(stage=stage, webhook_allow_loopback=True)  # type: ignore[arg-type]
    with pytest.raises(UnsafeTarget, match=r"loopback address 127\.0\.0\.1"):
        check_url("https://127.0.0.1/", settings=settings)
    with pytest.raises(UnsafeTarget, match="loopback address"):
        validate_url_syntax("https://[::1]/", settings=settings)


def test_paths_and_queries_are_sent_as_ascii() -> None:
    target = check_url("https://hooks.example.com/für/äb?q=é&x=%20y", settings=TEST, resolve=PUBLIC)
    assert target.path == "/f%C3%BCr/%C3%A4b?q=%C3%A9&x=%20y"
