use super::*;

#[test]
fn scopes_compare_and_hash_as_sets() {
    use std::hash::BuildHasher;
    let a = Scopes::parse("openid email target:b/X fund.read").unwrap();
    let b = Scopes::parse("fund.read target:b/X email openid").unwrap();
    assert_eq!(a, b);
    let h = std::hash::RandomState::new();
    assert_eq!(h.hash_one(&a), h.hash_one(&b));
    assert_eq!(a.canonical(), b.canonical());
    // The wire form keeps the caller's order.
    assert_eq!(b.to_string(), "fund.read target:b/X email openid");
    assert_ne!(a, Scopes::parse("openid email target:b/X").unwrap());
    assert_ne!(
        a,
        Scopes::parse("openid email target:b/X fund.write").unwrap()
    );
}

#[test]
fn parses_every_family() {
    let s =
        Scopes::parse("openid class_profile target:b/OAUTH_TEST offline_access fund.read custom.x")
            .unwrap();
    let v: Vec<_> = s.iter().cloned().collect();
    assert_eq!(v[0], Scope::OpenId);
    assert_eq!(
        v[2],
        Scope::Target(Target::Business(BusinessCode::new("OAUTH_TEST").unwrap()))
    );
    assert_eq!(v[4], Scope::Access(AccessSpecifier::FundRead));
    assert_eq!(v[5], Scope::Other("custom.x".into()));
    assert_eq!(s.business_code().unwrap().as_str(), "OAUTH_TEST");
    assert!(s.validate().is_ok());
}

#[test]
fn odd_targets_round_trip_as_custom() {
    for t in [
        "target:b/",
        "target:b/a/b",
        "target:f",
        "target:f/B",
        "target:x",
        "target:",
    ] {
        let s = Scope::parse(t).unwrap();
        assert!(matches!(s, Scope::Target(Target::Custom(_))), "{t}: {s:?}");
        assert_eq!(s.to_string(), t);
    }
    let f = Scope::parse("target:f/B1/F2").unwrap();
    assert!(matches!(f, Scope::Target(Target::Fund { .. })));
    assert_eq!(f.to_string(), "target:f/B1/F2");
}

#[test]
fn rules() {
    let parse = |s: &str| Scopes::parse(s).unwrap().validate();
    assert_eq!(
        parse("fund.read"),
        Err(ScopeError::AccessWithoutTarget("fund.read".into()))
    );
    assert_eq!(
        parse("target:b target:b/X fund.read"),
        Err(ScopeError::MultipleTargets(2))
    );
    assert_eq!(
        parse("class_profile"),
        Err(ScopeError::ClassProfileWithoutOpenId)
    );
    assert!(parse("openid class_profile").is_ok());
    assert!(parse("target:b").is_ok());
    assert_eq!(
        Scopes::builder().openid().require_refresh_token().build(),
        Err(ScopeError::RefreshNeedsOfflineAccess)
    );
    assert!(Scope::parse("a\"b").is_err());
    assert!(Scope::parse("").is_err());
}

#[test]
fn consent_texts() {
    assert_eq!(Scope::OpenId.consent_text(), Some("Know your identity"));
    assert_eq!(
        Scope::Access(AccessSpecifier::FundMaintain).consent_text(),
        Some("Read and modify all fund information")
    );
    assert_eq!(
        Scope::Access(AccessSpecifier::FundMemberMaintain).consent_text(),
        None
    );
    for a in AccessSpecifier::ALL {
        assert!(
            CATALOGUE.iter().any(|e| e.scope == a.as_str()),
            "{a:?} missing from catalogue"
        );
    }
}

#[test]
fn subset() {
    let granted = Scopes::parse("target:b/X fund.read offline_access").unwrap();
    assert!(
        Scopes::parse("fund.read")
            .unwrap()
            .check_subset_of(&granted)
            .is_ok()
    );
    assert_eq!(
        Scopes::parse("fund.maintain")
            .unwrap()
            .check_subset_of(&granted),
        Err(ScopeError::NotASubset("fund.maintain".into()))
    );
}
