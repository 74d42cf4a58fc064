//! OpenID relying-party conformance for ID tokens, table-driven: every Basic RP,
//! Config RP and refresh-token profile case of security-requirements section 1 that
//! concerns the token, plus the RFC 7515 vectors, mutations and fuzz-style input.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use class_oauth_core::id_token::{Expectations, IdTokenClaims, IdTokenError, IdTokenValidator};
use class_oauth_core::jose::{Algorithm, Jws};
use class_oauth_core::jwks::{JwkSet, KeySetCache};
use class_oauth_core::userinfo::UserInfo;
use class_oauth_core::{AccessToken, ClientId, ClientSecret, IdToken, IssuerUrl, Nonce};
use class_oauth_fixtures::jwt::{TestKey, jwks, sign_hs256, unsigned};
use proptest::prelude::*;
use serde_json::{Value, json};

const ISS: &str = "https://app.class.com.au";
const CLIENT: &str = "1eaa3979-9caf-4c6b-bab8-2cbcd549d410";
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn validator() -> IdTokenValidator {
    IdTokenValidator::new(IssuerUrl::new(ISS).unwrap(), ClientId::new(CLIENT))
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "user-123", "aud": CLIENT, "exp": NOW + 300, "iat": NOW - 10, "nonce": "n-0S6_WzA2Mj", "email": "sam@example.com"})
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn keyset(keys: &[&TestKey]) -> JwkSet {
    JwkSet::parse(jwks(keys).to_string().as_bytes()).unwrap()
}

fn nonce() -> Nonce {
    Nonce::new("n-0S6_WzA2Mj")
}

fn check(
    token: &str,
    keys: &JwkSet,
    expect: &Expectations<'_>,
) -> Result<IdTokenClaims, IdTokenError> {
    validator().validate(&IdToken::new(token), Some(keys), now(), expect)
}

/// XOR every signature byte with 0x5A, as the OpenID conformance suite does.
fn corrupt_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let bytes: Vec<u8> = URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap()
        .iter()
        .map(|b| b ^ 0x5A)
        .collect();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

enum Outcome {
    Accept,
    Reject(fn(&IdTokenError) -> bool),
}

#[test]
fn basic_rp_and_claim_cases() {
    let a = TestKey::rsa_a();
    let keys = keyset(&[&a]);
    let n = nonce();
    let expect = Expectations::without_nonce().with_nonce(&n);
    let sign = |c: Value| a.sign("RS256", &c, &json!({}));
    let cases: Vec<(&str, String, Outcome)> = vec![
        (
            "rp-id_token-sig-rs256 (oidcc-client-test)",
            sign(claims()),
            Outcome::Accept,
        ),
        (
            "rp-id_token-issuer-mismatch",
            sign(with(claims(), json!({"iss": format!("{ISS}1")}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::IssuerMismatch { .. })),
        ),
        (
            "rp-id_token-sub (missing)",
            sign(with(claims(), json!({"sub": null}))),
            Outcome::Reject(|e| *e == IdTokenError::MissingClaim("sub")),
        ),
        (
            "rp-id_token-aud (invalid)",
            sign(with(claims(), json!({"aud": format!("{CLIENT}1")}))),
            Outcome::Reject(|e| *e == IdTokenError::AudienceMismatch),
        ),
        (
            "rp-id_token-aud (missing)",
            sign(with(claims(), json!({"aud": null}))),
            Outcome::Reject(|e| *e == IdTokenError::MissingClaim("aud")),
        ),
        (
            "aud empty array",
            sign(with(claims(), json!({"aud": []}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::InvalidClaim { claim: "aud", .. })),
        ),
        (
            "aud one-element array = string",
            sign(with(claims(), json!({"aud": [CLIENT]}))),
            Outcome::Accept,
        ),
        (
            "aud extra untrusted, no azp",
            sign(with(claims(), json!({"aud": [CLIENT, "other"]}))),
            Outcome::Reject(|e| *e == IdTokenError::UntrustedAudience),
        ),
        (
            // OIDC Core 3.1.3.7 (3): an audience the client does not trust is refused,
            // whatever azp says.
            "aud extra untrusted, azp = client",
            sign(with(
                claims(),
                json!({"aud": [CLIENT, "other"], "azp": CLIENT}),
            )),
            Outcome::Reject(|e| *e == IdTokenError::UntrustedAudience),
        ),
        (
            "aud = client and azp = client",
            sign(with(claims(), json!({"aud": [CLIENT], "azp": CLIENT}))),
            Outcome::Accept,
        ),
        (
            "azp another client",
            sign(with(claims(), json!({"azp": "other"}))),
            Outcome::Reject(|e| *e == IdTokenError::AzpMismatch),
        ),
        (
            "rp-id_token-iat (missing)",
            sign(with(claims(), json!({"iat": null}))),
            Outcome::Reject(|e| *e == IdTokenError::MissingClaim("iat")),
        ),
        (
            "exp missing",
            sign(with(claims(), json!({"exp": null}))),
            Outcome::Reject(|e| *e == IdTokenError::MissingClaim("exp")),
        ),
        (
            "exp as string is an error, never absent",
            sign(with(claims(), json!({"exp": "1700000300"}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::InvalidClaim { claim: "exp", .. })),
        ),
        (
            "exp negative",
            sign(with(claims(), json!({"exp": -5}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::InvalidClaim { claim: "exp", .. })),
        ),
        (
            "expired beyond leeway",
            sign(with(claims(), json!({"exp": NOW - 61}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::Expired { .. })),
        ),
        (
            "expired within leeway",
            sign(with(claims(), json!({"exp": NOW - 59}))),
            Outcome::Accept,
        ),
        (
            "iat in the future",
            sign(with(claims(), json!({"iat": NOW + 120}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::IssuedInFuture { .. })),
        ),
        (
            "nbf in the future",
            sign(with(claims(), json!({"nbf": NOW + 120}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::NotYetValid { .. })),
        ),
        (
            "nbf as string",
            sign(with(claims(), json!({"nbf": "x"}))),
            Outcome::Reject(|e| matches!(e, IdTokenError::InvalidClaim { claim: "nbf", .. })),
        ),
        (
            "rp-nonce-invalid",
            sign(with(claims(), json!({"nonce": "n-0S6_WzA2Mj1"}))),
            Outcome::Reject(|e| *e == IdTokenError::NonceMismatch),
        ),
        (
            "nonce missing although sent",
            sign(with(claims(), json!({"nonce": null}))),
            Outcome::Reject(|e| *e == IdTokenError::NonceMissing),
        ),
        (
            "rp-id_token-bad-sig-rs256",
            corrupt_signature(&sign(claims())),
            Outcome::Reject(|e| *e == IdTokenError::BadSignature),
        ),
        (
            "rp-id_token-sig-none",
            unsigned(&claims()),
            Outcome::Reject(|e| *e == IdTokenError::AlgorithmNone),
        ),
        (
            "HS256 without a configured secret",
            sign_hs256(b"fixture-client-secret", &claims()),
            Outcome::Reject(|e| matches!(e, IdTokenError::AlgorithmNotAllowed(_))),
        ),
        (
            "PS256 not on the default allow-list",
            a.sign("PS256", &claims(), &json!({})),
            Outcome::Reject(|e| matches!(e, IdTokenError::AlgorithmNotAllowed(_))),
        ),
        (
            "unknown kid",
            TestKey::rsa_b().sign("RS256", &claims(), &json!({})),
            Outcome::Reject(|e| matches!(e, IdTokenError::UnknownKid(_)) && e.wants_key_refresh()),
        ),
        (
            "rp-id_token-kid-absent-single-jwks",
            TestKey::rsa_a()
                .with_kid(None)
                .sign("RS256", &claims(), &json!({})),
            Outcome::Accept,
        ),
        (
            "embedded jwk header is ignored (CVE-2018-0114)",
            TestKey::rsa_b().with_kid(Some("key-a")).sign(
                "RS256",
                &claims(),
                &json!({"jwk": TestKey::rsa_b().jwk()}),
            ),
            Outcome::Reject(|e| *e == IdTokenError::BadSignature),
        ),
        (
            "jku header is ignored",
            TestKey::rsa_b().with_kid(Some("key-a")).sign(
                "RS256",
                &claims(),
                &json!({"jku": "https://evil.example/jwks"}),
            ),
            Outcome::Reject(|e| *e == IdTokenError::BadSignature),
        ),
        (
            "a JWE (5 parts) is refused",
            "a.b.c.d.e".to_owned(),
            Outcome::Reject(|e| matches!(e, IdTokenError::Malformed(_))),
        ),
    ];
    let mut failures = Vec::new();
    for (name, token, outcome) in cases {
        let got = check(&token, &keys, &expect);
        let ok = match (&outcome, &got) {
            (Outcome::Accept, Ok(c)) => c.sub == "user-123",
            (Outcome::Reject(pred), Err(e)) => pred(e),
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: got {got:?}"));
        }
        if let Err(e) = &got {
            assert!(
                !e.to_string().contains(&token),
                "{name}: message contains the token"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kid_absent_with_several_keys_is_rejected_as_ambiguous() {
    let keys = keyset(&[&TestKey::rsa_a(), &TestKey::rsa_b()]);
    let token = TestKey::rsa_a()
        .with_kid(None)
        .sign("RS256", &claims(), &json!({}));
    assert_eq!(
        check(&token, &keys, &Expectations::without_nonce()).unwrap_err(),
        IdTokenError::AmbiguousKey
    );
}

#[test]
fn configured_algorithms_and_hmac_on_purpose() {
    let a = TestKey::rsa_a();
    let ec = TestKey::ec_p256();
    let keys = keyset(&[&a, &ec]);
    let v = validator().with_algorithms([Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]);
    for token in [
        a.sign("PS256", &claims(), &json!({})),
        ec.sign("ES256", &claims(), &json!({})),
    ] {
        assert!(
            v.validate(
                &IdToken::new(&token),
                Some(&keys),
                now(),
                &Expectations::without_nonce()
            )
            .is_ok()
        );
    }
    let hs = sign_hs256(b"fixture-client-secret", &claims());
    let v = validator().danger_allow_hmac_with_client_secret(
        ClientSecret::new("fixture-client-secret"),
        &[Algorithm::HS256],
    );
    assert!(
        v.validate(
            &IdToken::new(&hs),
            None,
            now(),
            &Expectations::without_nonce()
        )
        .is_ok()
    );
    let wrong = validator()
        .danger_allow_hmac_with_client_secret(ClientSecret::new("other"), &[Algorithm::HS256]);
    assert_eq!(
        wrong
            .validate(
                &IdToken::new(&hs),
                None,
                now(),
                &Expectations::without_nonce()
            )
            .unwrap_err(),
        IdTokenError::BadSignature
    );
    // Discovery's list intersected with what is supported: HS256 and none never come in that way.
    let mut endpoints = class_oauth_core::Environment::Production.preset();
    endpoints.id_token_signing_alg_values_supported = Some(vec![
        "none".into(),
        "HS256".into(),
        "ES256".into(),
        "XX1".into(),
    ]);
    let v = IdTokenValidator::for_endpoints(&endpoints, ClientId::new(CLIENT));
    assert_eq!(v.algorithms(), &[Algorithm::ES256]);
    assert_eq!(
        validator().with_leeway(Duration::from_secs(3600)).leeway(),
        Duration::from_secs(300)
    );
}

#[test]
fn at_hash_and_max_age() {
    let a = TestKey::rsa_a();
    let keys = keyset(&[&a]);
    let at = AccessToken::new("dNZX1hEZ9wBCzNL40Upu646bdzQA");
    let digest = ring_sha256(at.secret().as_bytes());
    let at_hash = URL_SAFE_NO_PAD.encode(&digest[..16]);
    let good = a.sign(
        "RS256",
        &with(claims(), json!({"at_hash": at_hash})),
        &json!({}),
    );
    let expect = Expectations::without_nonce().with_access_token(&at);
    assert!(check(&good, &keys, &expect).is_ok());
    let other = AccessToken::new("another");
    assert_eq!(
        check(
            &good,
            &keys,
            &Expectations::without_nonce().with_access_token(&other)
        )
        .unwrap_err(),
        IdTokenError::AtHashMismatch
    );

    let mut e = Expectations::without_nonce();
    e.max_age = Some(Duration::from_secs(600));
    assert_eq!(
        check(&a.sign("RS256", &claims(), &json!({})), &keys, &e).unwrap_err(),
        IdTokenError::AuthTimeMissing
    );
    let old = a.sign(
        "RS256",
        &with(claims(), json!({"auth_time": NOW - 3600})),
        &json!({}),
    );
    assert!(matches!(
        check(&old, &keys, &e).unwrap_err(),
        IdTokenError::AuthenticationTooOld { .. }
    ));
    let fresh = a.sign(
        "RS256",
        &with(claims(), json!({"auth_time": NOW - 100})),
        &json!({}),
    );
    assert!(check(&fresh, &keys, &e).is_ok());
}

/// OIDC Core 3.3.2.11: at_hash is the left half of the SHA-256 of the access token.
fn ring_sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

#[test]
fn refresh_token_profile() {
    let a = TestKey::rsa_a();
    let keys = keyset(&[&a]);
    let original = check(
        &a.sign(
            "RS256",
            &with(claims(), json!({"auth_time": NOW - 50})),
            &json!({}),
        ),
        &keys,
        &Expectations::without_nonce(),
    )
    .unwrap();
    let refreshed = |c: Value| a.sign("RS256", &c, &json!({}));
    let expect = Expectations::for_refresh(&original);
    // oidcc-client-test-refresh-token: same iss and sub, no nonce.
    assert!(
        check(
            &refreshed(with(
                claims(),
                json!({"nonce": null, "auth_time": NOW - 50})
            )),
            &keys,
            &expect
        )
        .is_ok()
    );
    // oidcc-client-test-refresh-token-invalid-issuer
    let e = check(
        &refreshed(with(
            claims(),
            json!({"iss": format!("{ISS}1"), "nonce": null}),
        )),
        &keys,
        &expect,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            IdTokenError::IssuerMismatch { .. } | IdTokenError::RefreshIssuerChanged
        ),
        "{e:?}"
    );
    // oidcc-client-test-refresh-token-invalid-sub
    let e = check(
        &refreshed(with(
            claims(),
            json!({"sub": "user-123invalid", "nonce": null}),
        )),
        &keys,
        &expect,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the refreshed ID token is about another user: sub mismatch, expected `user-123`, got `user-123invalid`"
    );
    // A nonce on a refreshed token must be the original's (Keycloak >= 25 sends none: fine).
    assert_eq!(
        check(
            &refreshed(with(claims(), json!({"nonce": "other"}))),
            &keys,
            &expect
        )
        .unwrap_err(),
        IdTokenError::RefreshNonceMismatch
    );
    assert!(check(&refreshed(claims()), &keys, &expect).is_ok());
    assert_eq!(
        check(
            &refreshed(with(claims(), json!({"auth_time": NOW - 5}))),
            &keys,
            &expect
        )
        .unwrap_err(),
        IdTokenError::RefreshAuthTimeChanged
    );
}

#[test]
fn userinfo_sub_must_match_the_id_token() {
    let a = TestKey::rsa_a();
    let claims = check(
        &a.sign("RS256", &claims(), &json!({})),
        &keyset(&[&a]),
        &Expectations::without_nonce(),
    )
    .unwrap();
    let mut info = UserInfo::default();
    info.sub = "user-123invalid".into();
    assert!(info.check_subject(&claims).is_err());
    info.sub = "user-123".into();
    assert!(info.check_subject(&claims).is_ok());
}

#[test]
fn key_rotation_refetches_once_per_cooldown() {
    // rp-key-rotation-op-sign-key(-native): an unknown kid triggers one refetch; a second
    // unknown kid inside the cooldown does not; after the cooldown it may.
    let a = TestKey::rsa_a();
    let b = TestKey::rsa_b();
    let mut cache = KeySetCache::new("https://app.class.com.au/jwks".parse().unwrap());
    let serve = |keys: &[&TestKey]| {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(jwks(keys).to_string().into_bytes())
            .unwrap()
    };
    cache.handle_response(now(), &serve(&[&a])).unwrap();
    let rotated = b.sign("RS256", &claims(), &json!({}));
    let later = now() + Duration::from_secs(61);
    let err = validator()
        .validate(
            &IdToken::new(&rotated),
            cache.keys(),
            later,
            &Expectations::without_nonce(),
        )
        .unwrap_err();
    assert!(err.wants_key_refresh());
    assert!(cache.may_refetch_for_unknown_kid(later));
    cache.handle_response(later, &serve(&[&a, &b])).unwrap();
    assert!(
        validator()
            .validate(
                &IdToken::new(&rotated),
                cache.keys(),
                later,
                &Expectations::without_nonce()
            )
            .is_ok()
    );
    // Junk kids right after: no refetch allowed within the cooldown.
    assert!(!cache.may_refetch_for_unknown_kid(later + Duration::from_secs(30)));
    // An expired token with an unknown kid fails on the cheap check first: no refetch signal.
    let expired = TestKey::rsa_b().with_kid(Some("random")).sign(
        "RS256",
        &with(claims(), json!({"exp": NOW - 1000})),
        &json!({}),
    );
    let e = validator()
        .validate(
            &IdToken::new(&expired),
            cache.keys(),
            later,
            &Expectations::without_nonce(),
        )
        .unwrap_err();
    assert!(matches!(e, IdTokenError::Expired { .. }) && !e.wants_key_refresh());
}

#[test]
fn rfc7515_vectors() {
    // A.2: RS256.
    let rs = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    let rsa = JwkSet::parse(br#"{"keys":[{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}]}"#).unwrap();
    let jws = Jws::parse(rs).unwrap();
    assert_eq!(
        jws.payload,
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );
    let key = &rsa.select(None, Algorithm::RS256).unwrap().key;
    jws.verify(rs, Algorithm::RS256, key).unwrap();
    assert_eq!(
        Jws::parse(&corrupt_signature(rs)).unwrap().verify(
            &corrupt_signature(rs),
            Algorithm::RS256,
            key
        ),
        Err(IdTokenError::BadSignature)
    );
    // A.3: ES256.
    let es = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let ec = JwkSet::parse(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#).unwrap();
    Jws::parse(es)
        .unwrap()
        .verify(
            es,
            Algorithm::ES256,
            &ec.select(None, Algorithm::ES256).unwrap().key,
        )
        .unwrap();
    // A.1: HS256.
    let hs = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let k = URL_SAFE_NO_PAD.decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow").unwrap();
    Jws::parse(hs)
        .unwrap()
        .verify_hmac(hs, Algorithm::HS256, &k)
        .unwrap();
    assert!(
        Jws::parse(hs)
            .unwrap()
            .verify_hmac(hs, Algorithm::HS256, b"wrong")
            .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any single-byte change to a valid token's payload or signature is rejected.
    #[test]
    fn any_single_byte_change_is_rejected(pos in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let a = TestKey::rsa_a();
        let keys = keyset(&[&a]);
        let token = a.sign("RS256", &claims(), &json!({}));
        let header_len = token.find('.').unwrap() + 1;
        let i = header_len + pos.index(token.len() - header_len);
        let mut bytes = token.into_bytes();
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert!(check(&mutated, &keys, &Expectations::without_nonce()).is_err());
    }

    /// Arbitrary input never panics: token strings, key sets and cache snapshots.
    #[test]
    fn arbitrary_input_never_panics(s in "[A-Za-z0-9_.=-]{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let keys = keyset(&[&TestKey::rsa_a()]);
        let _ = check(&s, &keys, &Expectations::without_nonce());
        let _ = JwkSet::parse(&bytes);
        let _ = Jws::parse(&String::from_utf8_lossy(&bytes));
        let header = URL_SAFE_NO_PAD.encode(&bytes);
        let _ = check(&format!("{header}.{header}.{header}"), &keys, &Expectations::without_nonce());
    }

    /// Claims with arbitrary JSON types never panic and wrong types are errors.
    #[test]
    fn claim_types_are_strict(exp in prop_oneof![Just(json!("1")), Just(json!(null)), Just(json!([])), Just(json!(1e300)), Just(json!(-1)), Just(json!(true))]) {
        let a = TestKey::rsa_a();
        let token = a.sign("RS256", &with(claims(), json!({"exp": exp})), &json!({}));
        prop_assert!(check(&token, &keyset(&[&a]), &Expectations::without_nonce()).is_err());
    }
}

/// OIDC Core 12.2: a refresh response may omit the ID token. The stored one is kept and
/// not validated again: its `exp` has long passed and its `at_hash` is for the first
/// access token. (Before: the flow re-validated the carried-over token and every refresh
/// after the first ID token expired failed, losing the rotated refresh token.) A new ID
/// token that does come is checked against the original claims, and the parsed response
/// is available to the caller even when that check fails.
#[test]
fn refresh_without_id_token_keeps_the_original_and_a_new_one_is_checked() {
    use class_oauth_core::environment::Environment;
    use class_oauth_core::flow::ClientConfig;
    use class_oauth_core::flow::{Flow, Step};

    let a = TestKey::rsa_a();
    let endpoints = Environment::Custom(IssuerUrl::new(ISS).unwrap())
        .preset()
        .with_jwks_uri("https://app.class.com.au/jwks".parse().unwrap())
        .unwrap();
    let config = ClientConfig::new(ClientId::new(CLIENT), Some(ClientSecret::new("s")));
    let mut cache = KeySetCache::new(endpoints.jwks_uri.clone().unwrap());
    let jwks_response = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(jwks(&[&a]).to_string().into_bytes())
        .unwrap();
    cache.handle_response(now(), &jwks_response).unwrap();
    let keys = std::sync::Arc::new(class_oauth_fixtures::KeySets::new(config.max_body));
    keys.set(cache);
    let keys: std::sync::Arc<dyn class_oauth_core::flow::KeyCache> = keys;
    let original_token = a.sign("RS256", &claims(), &json!({}));
    let original = check(
        &original_token,
        &keyset(&[&a]),
        &Expectations::without_nonce(),
    )
    .unwrap();
    // Stored an hour ago: the first ID token expired 55 minutes ago.
    let stored_at = now() - Duration::from_secs(3600);
    let stored_unix = NOW - 3600;
    let first: class_oauth_core::TokenSet = serde_json::from_value(json!({
        "access_token": "a0", "token_type": "bearer", "refresh_token": "r0",
        "id_token": original_token, "scopes": "openid", "scope_in_response": false,
        "received_at": stored_unix, "expires_in": 899, "expires_at": stored_unix + 899,
        "extra": {}
    }))
    .unwrap();
    assert_eq!(first.received_at, stored_at);
    let later = now() + Duration::from_secs(3600);
    let run = |body: Value| {
        let mut flow = config
            .refresh_flow(&endpoints, Some(&keys), &first, Some(&original))
            .unwrap()
            .retain_received();
        let Step::Send(_) = flow.poll(later) else {
            panic!("the flow sends the refresh request first")
        };
        flow.handle_response(later, json_response(&body));
        let result = match flow.poll(later) {
            Step::Done(r) => r,
            other => panic!("no key fetch expected, got {other:?}"),
        };
        (result, flow.received().cloned())
    };
    // Twice in a row, both long after the first ID token's exp.
    let (ok, _) = run(json!({"access_token": "a1", "refresh_token": "r1", "expires_in": 899}));
    let ok = ok.expect("a refresh without an ID token succeeds after the first one expired");
    assert_eq!(
        ok.tokens.id_token, first.id_token,
        "the original ID token is kept"
    );
    assert_eq!(
        ok.id_claims, None,
        "no new claims: the caller keeps the original's"
    );
    let (ok, _) = run(json!({"access_token": "a2", "refresh_token": "r2", "expires_in": 899}));
    assert_eq!(ok.unwrap().tokens.access_token.secret(), "a2");
    // A new ID token about another user is refused, and the rotated refresh token is
    // still readable from the flow.
    let other_user = a.sign(
        "RS256",
        &with(
            claims(),
            json!({"sub": "someone-else", "nonce": null, "exp": NOW + 3900, "iat": NOW + 3590}),
        ),
        &json!({}),
    );
    let (err, received) = run(
        json!({"access_token": "a3", "refresh_token": "r3", "expires_in": 899, "id_token": other_user}),
    );
    assert!(err.is_err(), "{err:?}");
    assert_eq!(received.unwrap().refresh_token.unwrap().secret(), "r3");
}

fn json_response(body: &Value) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap()
}

/// An issuer configured (or discovered) with a trailing slash is compared exactly: the
/// token's `iss` with the slash matches, without it does not.
#[test]
fn issuer_with_a_trailing_slash_matches_exactly() {
    let a = TestKey::rsa_a();
    let keys = keyset(&[&a]);
    let slash = format!("{ISS}/");
    let v = IdTokenValidator::new(IssuerUrl::new(&slash).unwrap(), ClientId::new(CLIENT));
    let token =
        |iss: &str| IdToken::new(a.sign("RS256", &with(claims(), json!({"iss": iss})), &json!({})));
    let expect = Expectations::without_nonce();
    assert_eq!(
        v.validate(&token(&slash), Some(&keys), now(), &expect)
            .unwrap()
            .iss,
        slash
    );
    assert!(matches!(
        v.validate(&token(ISS), Some(&keys), now(), &expect),
        Err(IdTokenError::IssuerMismatch { .. })
    ));
}

/// `Debug` of validated claims and of UserInfo shows the subject, never personal data.
#[test]
fn debug_of_claims_and_userinfo_redacts_personal_data() {
    let a = TestKey::rsa_a();
    let token = a.sign(
        "RS256",
        &with(
            claims(),
            json!({"email": "sam@example.com", "phone_number": "+61 400 000 000"}),
        ),
        &json!({}),
    );
    let n = nonce();
    let claims = check(
        &token,
        &keyset(&[&a]),
        &Expectations::without_nonce().with_nonce(&n),
    )
    .unwrap();
    let text = format!("{claims:?}");
    assert!(text.contains("user-123"), "{text}");
    for personal in ["sam@example.com", "+61 400 000 000", "n-0S6_WzA2Mj"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    assert!(
        text.contains("phone_number"),
        "extra claims are named: {text}"
    );
    let info: UserInfo = serde_json::from_value(json!({
        "sub": "user-123", "email": "sam@example.com", "name": "Sam Citizen",
        "business_code": "OAUTH_TEST", "class_role": ["Accountant"], "extra": {}
    }))
    .unwrap();
    let text = format!("{info:?}");
    assert!(
        text.contains("user-123") && text.contains("OAUTH_TEST"),
        "{text}"
    );
    assert!(
        !text.contains("sam@example.com") && !text.contains("Sam Citizen"),
        "{text}"
    );
}
