"""Supabase JWT verification: HS256 with the dev secret, RS256/ES256/EdDSA through a real JWKS server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from observai.auth import jwt as auth_jwt
from observai.auth.jwt import issue_dev_token, verify_supabase_jwt
from observai.config import SUPABASE_CLI_DEV_JWT_SECRET, Settings
from observai.errors import Unauthenticated, Unavailable
from pydantic import SecretStr

from tests.fakes.supabase_auth import FakeSupabaseAuth

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def _fresh_jwks_cache() -> Iterator[None]:
    auth_jwt.reset_jwks_cache()
    yield
    auth_jwt.reset_jwks_cache()


@pytest.fixture
def settings() -> Settings:
    return Settings(stage="test")


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "supabase-local",
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "email": "ada@example.com",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(secret: str = SUPABASE_CLI_DEV_JWT_SECRET, **overrides: Any) -> str:
    return pyjwt.encode(_claims(**overrides), secret, algorithm="HS256")


def _rejected(token: str, settings: Settings) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        verify_supabase_jwt(token, settings)
    # The message never echoes the token.
    assert token == "" or token not in info.value.message
    return info.value


# --- HS256 (legacy shared secret) --------------------------------------------------------------


def test_dev_token_round_trips(settings: Settings) -> None:
    # Given a development token for a user
    user_id = uuid.uuid4()
    token = issue_dev_token(user_id, "ada@example.com", settings=settings, org_hint="x")
    # When it is verified with the same (dev) settings
    claims = verify_supabase_jwt(token, settings)
    # Then the claims are Supabase-shaped
    assert claims["sub"] == str(user_id)
    assert claims["aud"] == "authenticated"
    assert claims["role"] == "authenticated"
    assert claims["email"] == "ada@example.com"
    assert claims["iss"] == "supabase-local"
    assert uuid.UUID(claims["session_id"])
    assert claims["exp"] - claims["iat"] == 86_400
    assert claims["org_hint"] == "x"
    assert pyjwt.get_unverified_header(token)["alg"] == "HS256"


def test_dev_token_issuer_follows_supabase_url() -> None:
    # Given settings pointing at a Supabase project
    settings = Settings(stage="test", supabase_url="https://abc.supabase.co/")
    # When a dev token is issued
    claims = pyjwt.decode(issue_dev_token(uuid.uuid4(), settings=settings), options={"verify_signature": False})
    # Then its issuer is the project's auth URL
    assert claims["iss"] == "https://abc.supabase.co/auth/v1"


def test_dev_token_refused_in_prod() -> None:
    # Given prod settings, even with a secret
    settings = Settings(stage="prod", supabase_jwt_secret=SecretStr("p" * 40))
    # When / Then issuing a dev token is refused
    with pytest.raises(RuntimeError, match="prod"):
        issue_dev_token(uuid.uuid4(), settings=settings)


def test_dev_token_needs_a_uuid() -> None:
    with pytest.raises(ValueError):
        issue_dev_token("not-a-uuid", settings=Settings(stage="test"))


def test_expired_token_is_rejected(settings: Settings) -> None:
    # Given a token that expired two minutes ago (beyond the 30 s leeway)
    token = _hs256(exp=int(time.time()) - 120, iat=int(time.time()) - 3600)
    # When / Then
    assert _rejected(token, settings).code == "token_expired"


def test_expiry_within_leeway_is_accepted(settings: Settings) -> None:
    # Given a token that expired 5 s ago (clock skew)
    token = _hs256(exp=int(time.time()) - 5)
    # When / Then it still verifies
    assert verify_supabase_jwt(token, settings)["aud"] == "authenticated"


def test_nbf_in_the_future_is_rejected(settings: Settings) -> None:
    # Given a token not valid for another ten minutes
    token = _hs256(nbf=int(time.time()) + 600)
    # When / Then
    assert _rejected(token, settings).code == "token_not_yet_valid"


def test_iat_in_the_future_is_rejected(settings: Settings) -> None:
    token = _hs256(iat=int(time.time()) + 600)
    assert _rejected(token, settings).code == "token_not_yet_valid"


@pytest.mark.parametrize("aud", ["anon", "service_role", ["other"]])
def test_wrong_audience_is_rejected(settings: Settings, aud: Any) -> None:
    # Given a token for another audience
    token = _hs256(aud=aud)
    # When / Then
    assert _rejected(token, settings).code == "token_invalid_audience"


def test_missing_audience_is_rejected(settings: Settings) -> None:
    token = pyjwt.encode({k: v for k, v in _claims().items() if k != "aud"}, SUPABASE_CLI_DEV_JWT_SECRET)
    assert _rejected(token, settings).code == "token_invalid_audience"


def test_configured_audience_is_used() -> None:
    # Given a deployment with a custom audience
    settings = Settings(stage="test", jwt_audience="observai")
    # Then tokens for it verify and tokens for "authenticated" do not
    assert verify_supabase_jwt(_hs256(aud="observai"), settings)["aud"] == "observai"
    assert _rejected(_hs256(), settings).code == "token_invalid_audience"


def test_bad_signature_is_rejected(settings: Settings) -> None:
    # Given a token signed with another secret
    token = _hs256(secret="another-secret-that-is-at-least-32-characters")
    # When / Then
    err = _rejected(token, settings)
    assert err.code == "token_invalid_signature"
    assert err.message == "Token signature is invalid"


def test_tampered_payload_is_rejected(settings: Settings) -> None:
    # Given a valid token whose payload is swapped for another user's
    good = _hs256()
    other = _hs256(sub=str(uuid.uuid4()))
    tampered = ".".join([good.split(".")[0], other.split(".")[1], good.split(".")[2]])
    # When / Then
    assert _rejected(tampered, settings).code == "token_invalid_signature"


def test_alg_none_is_rejected(settings: Settings) -> None:
    # Given an unsigned token
    token = pyjwt.encode(_claims(), "", algorithm="none")
    # When / Then
    assert _rejected(token, settings).code == "token_unsupported_algorithm"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_rejected(settings: Settings, alg: str) -> None:
    token = pyjwt.encode(_claims(), SUPABASE_CLI_DEV_JWT_SECRET * 2, algorithm=alg)
    assert _rejected(token, settings).code == "token_unsupported_algorithm"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.!!!.x", "x" * 20_000])
def test_malformed_tokens_are_rejected(settings: Settings, token: str) -> None:
    assert _rejected(token, settings).code == "token_malformed"


def test_header_without_alg_is_malformed(settings: Settings) -> None:
    token = _hs256()
    # PyJWT always writes alg; swap in a header without one.
    header = pyjwt.utils.base64url_encode(b'{"typ":"JWT"}').decode()
    token = ".".join([header, *token.split(".")[1:]])
    assert _rejected(token, settings).code == "token_malformed"


def test_missing_sub_is_rejected(settings: Settings) -> None:
    # Given a token without a subject
    token = _hs256(sub=None)
    # When / Then
    err = _rejected(token, settings)
    assert err.code == "token_missing_claim"
    assert "sub" in err.message


def test_missing_exp_is_rejected(settings: Settings) -> None:
    token = _hs256(exp=None)
    err = _rejected(token, settings)
    assert err.code == "token_missing_claim"
    assert "exp" in err.message


@pytest.mark.parametrize("sub", ["user-1", "", 12345, "00000000-0000-0000-0000"])
def test_non_uuid_sub_is_rejected(settings: Settings, sub: Any) -> None:
    # Given a token whose subject is not a Supabase user id
    token = _hs256(sub=sub)
    # When / Then
    assert _rejected(token, settings).code == "token_invalid_subject"


def test_hs256_without_secret_is_rejected() -> None:
    # Given a deployed stage with no legacy JWT secret configured
    settings = Settings(stage="dev")
    assert settings.jwt_secret is None
    # When / Then HS256 tokens (even ones signed with the dev secret) are refused
    err = _rejected(_hs256(), settings)
    assert err.code == "token_unsupported_algorithm"
    assert err.message == "HS256 tokens are not accepted: no JWT secret configured"


def test_asymmetric_token_without_jwks_url_is_rejected(settings: Settings, rsa_key: rsa.RSAPrivateKey) -> None:
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert _rejected(token, settings).code == "token_unsupported_algorithm"


# --- asymmetric keys through a real JWKS endpoint ------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm: Any = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}


@pytest.fixture
def fake() -> Iterator[FakeSupabaseAuth]:
    with FakeSupabaseAuth() as server:
        yield server


@pytest.fixture
def jwks_settings(fake: FakeSupabaseAuth) -> Settings:
    return Settings(stage="test", supabase_url=fake.url)


def _jwks_fetches(fake: FakeSupabaseAuth) -> int:
    return len(fake.requests_to(JWKS_PATH))


@pytest.mark.parametrize(("alg", "key_fixture"), [("RS256", "rsa_key"), ("ES256", "ec_key"), ("EdDSA", "ed_key")])
def test_asymmetric_tokens_verify_through_jwks(
    request: pytest.FixtureRequest, fake: FakeSupabaseAuth, jwks_settings: Settings, alg: str, key_fixture: str
) -> None:
    # Given the auth server publishes the public key
    private_key = request.getfixturevalue(key_fixture)
    fake.jwks.append(_public_jwk(private_key, f"{alg}-key", alg))
    user_id = str(uuid.uuid4())
    token = pyjwt.encode(_claims(sub=user_id), private_key, algorithm=alg, headers={"kid": f"{alg}-key"})
    # When the token is verified twice
    first = verify_supabase_jwt(token, jwks_settings)
    second = verify_supabase_jwt(token, jwks_settings)
    # Then both pass and the JWKS was fetched once (cached per container)
    assert first["sub"] == second["sub"] == user_id
    assert _jwks_fetches(fake) == 1


def test_asymmetric_token_checks_claims_too(
    fake: FakeSupabaseAuth, jwks_settings: Settings, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    # Given a properly signed ES256 token that has expired
    fake.jwks.append(_public_jwk(ec_key, "ec1", "ES256"))
    now = int(time.time())
    token = pyjwt.encode(_claims(exp=now - 600, iat=now - 4000), ec_key, algorithm="ES256", headers={"kid": "ec1"})
    # When / Then
    assert _rejected(token, jwks_settings).code == "token_expired"


def test_token_signed_by_another_key_with_known_kid_is_rejected(
    fake: FakeSupabaseAuth, jwks_settings: Settings, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Given the JWKS has kid "k1", and an attacker signs with their own key under that kid
    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = pyjwt.encode(_claims(), attacker, algorithm="RS256", headers={"kid": "k1"})
    # When / Then
    assert _rejected(token, jwks_settings).code == "token_invalid_signature"


def test_token_alg_must_match_the_jwk(
    fake: FakeSupabaseAuth,
    jwks_settings: Settings,
    ec_key: ec.EllipticCurvePrivateKey,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    # Given kid "k1" is an EC (ES256) key, and a token claims RS256 under that kid
    fake.jwks.append(_public_jwk(ec_key, "k1", "ES256"))
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    # When / Then the key decides the algorithm, not the token
    assert _rejected(token, jwks_settings).code == "token_unsupported_algorithm"


def test_hs256_signed_with_public_key_is_rejected(
    fake: FakeSupabaseAuth, jwks_settings: Settings, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Given the classic confusion attack: HS256 "signed" with the published RSA public key
    from cryptography.hazmat.primitives import serialization

    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    token = pyjwt.encode(_claims(), pem.decode()[:200], algorithm="HS256", headers={"kid": "k1"})
    # When / Then HS256 is only ever checked against the shared secret
    assert _rejected(token, jwks_settings).code == "token_invalid_signature"


def test_unknown_kid_is_rejected_without_hammering_the_jwks(
    fake: FakeSupabaseAuth, jwks_settings: Settings, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Given the JWKS holds k1 only
    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    # When five tokens with unknown kids arrive
    for i in range(5):
        token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": f"unknown-{i}"})
        # Then each is rejected
        assert _rejected(token, jwks_settings).code == "token_unknown_key"
    # And the refetch cooldown kept it to the one initial fetch
    assert _jwks_fetches(fake) == 1


def test_missing_kid_is_rejected(fake: FakeSupabaseAuth, jwks_settings: Settings, rsa_key: rsa.RSAPrivateKey) -> None:
    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256")
    assert _rejected(token, jwks_settings).code == "token_unknown_key"


def test_unknown_kid_triggers_one_refetch_then_finds_a_rotated_key(
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeSupabaseAuth,
    jwks_settings: Settings,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    # Given no refetch cooldown, and a JWKS already fetched with k1
    monkeypatch.setattr(auth_jwt, "JWKS_REFRESH_COOLDOWN_S", 0.0)
    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    verify_supabase_jwt(pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"}), jwks_settings)
    assert _jwks_fetches(fake) == 1
    # When the auth server rotates to a new key k2 and a token signed with it arrives
    fake.jwks.append(_public_jwk(ec_key, "k2", "ES256"))
    token = pyjwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "k2"})
    # Then it verifies after exactly one refetch
    assert verify_supabase_jwt(token, jwks_settings)["aud"] == "authenticated"
    assert _jwks_fetches(fake) == 2
    # And a truly unknown kid costs one refetch, then is rejected
    bogus = pyjwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "nope"})
    assert _rejected(bogus, jwks_settings).code == "token_unknown_key"
    assert _jwks_fetches(fake) == 3


def test_revoked_key_stops_verifying_once_the_jwks_cache_expires(
    monkeypatch: pytest.MonkeyPatch, fake: FakeSupabaseAuth, jwks_settings: Settings, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Given a short JWKS lifespan and a verified k1 token
    monkeypatch.setattr(auth_jwt, "JWKS_LIFESPAN_S", 0.2)
    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    verify_supabase_jwt(token, jwks_settings)
    # When k1 is removed from the JWKS (revoked) and the cache lifespan passes
    fake.jwks.clear()
    fake.jwks.append(_public_jwk(ec.generate_private_key(ec.SECP256R1()), "k2", "ES256"))
    time.sleep(0.3)
    # Then k1 tokens are rejected (no per-key cache outliving the JWK Set)
    assert _rejected(token, jwks_settings).code == "token_unknown_key"


def test_jwks_server_down_is_unavailable(rsa_key: rsa.RSAPrivateKey) -> None:
    # Given a JWKS URL where nothing listens any more
    server = FakeSupabaseAuth().start()
    settings = Settings(stage="test", supabase_url=server.url)
    server.stop()
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    # When / Then our dependency failed: 503-style, not 401 and not 500
    with pytest.raises(Unavailable) as info:
        verify_supabase_jwt(token, settings)
    assert info.value.retry_after_s >= 1
    assert token not in info.value.message


@pytest.mark.parametrize(
    "failure",
    [
        (500, {"message": "boom"}),
        (503, {"message": "upstream unavailable"}),
        (200, "not a json object"),
        (200, {"keys": []}),
        (200, {"keys": [{"kty": "nonsense"}]}),
    ],
)
def test_broken_jwks_is_unavailable(
    fake: FakeSupabaseAuth, jwks_settings: Settings, rsa_key: rsa.RSAPrivateKey, failure: tuple[int, Any]
) -> None:
    # Given the JWKS endpoint answers an error or an unusable key set
    fake.jwks_fail_with = failure
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    # When / Then
    with pytest.raises(Unavailable):
        verify_supabase_jwt(token, jwks_settings)


def test_jwks_url_setting_overrides_the_default(fake: FakeSupabaseAuth, rsa_key: rsa.RSAPrivateKey) -> None:
    # Given an explicit SUPABASE_JWKS_URL and an unrelated SUPABASE_URL
    fake.jwks.append(_public_jwk(rsa_key, "k1", "RS256"))
    settings = Settings(stage="test", supabase_url="http://127.0.0.1:9", supabase_jwks_url=fake.jwks_url)
    token = pyjwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    # When / Then the explicit URL is used
    assert verify_supabase_jwt(token, settings)["role"] == "authenticated"
