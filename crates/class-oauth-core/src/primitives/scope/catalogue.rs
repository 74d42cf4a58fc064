//! The scope catalogue: every scope Class is known to grant, with the consent text its
//! screen shows and how sure the project is of it (the fact sheet's tags).

/// How sure the project is of a catalogue entry (fact-sheet tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confidence {
    /// Stated in Class documentation.
    Documented,
    /// Inferred from documentation; likely but not confirmed.
    Inferred,
    /// Not confirmed at all.
    Unconfirmed,
}

/// One entry of the scope catalogue.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ScopeInfo {
    /// The scope token (or pattern, for targets).
    pub scope: &'static str,
    /// The text Class's consent screen shows, when known.
    pub consent_text: Option<&'static str>,
    /// What the scope gives.
    pub description: &'static str,
    /// A rule that applies to it, if any.
    pub rule: Option<&'static str>,
    /// How sure the mapping is.
    pub confidence: Confidence,
}

const BASIC_INFO: &str =
    "Read your basic information, email address, address and business information";

/// The scope catalogue (fact sheet 8.1 to 8.6), for printing and consent previews.
pub const CATALOGUE: &[ScopeInfo] = &[
    ScopeInfo {
        scope: "openid",
        consent_text: Some("Know your identity"),
        description: "An ID token identifying the user (confirmed email, MFA performed); used for single sign-on.",
        rule: None,
        confidence: Confidence::Inferred,
    },
    ScopeInfo {
        scope: "profile",
        consent_text: Some(BASIC_INFO),
        description: "Standard profile claims (name, given_name, family_name, ...) in UserInfo.",
        rule: None,
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "email",
        consent_text: Some(BASIC_INFO),
        description: "The email claim in the ID token and UserInfo.",
        rule: None,
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "address",
        consent_text: Some(BASIC_INFO),
        description: "The address claim in UserInfo.",
        rule: None,
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "phone",
        consent_text: Some(BASIC_INFO),
        description: "The phone_number claim in UserInfo.",
        rule: None,
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "class_profile",
        consent_text: Some(BASIC_INFO),
        description: "business_name, business_code, business_address, business_phone_number and class_role in UserInfo.",
        rule: Some("needs openid"),
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "offline_access",
        consent_text: Some("Access your data while you are not logged into Class"),
        description: "A refresh token (one-time, rotated, 30 days).",
        rule: Some("required for a refresh token"),
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "target:b",
        consent_text: None,
        description: "Business-level access; the user picks the business at consent and the granted scope returns target:b/<CODE>.",
        rule: Some("exactly one target when any access specifier is requested"),
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "target:b/<CODE>",
        consent_text: None,
        description: "Business-level access to the named business.",
        rule: Some("exactly one target when any access specifier is requested"),
        confidence: Confidence::Documented,
    },
    ScopeInfo {
        scope: "target:f/<BUSINESS>/<FUND>",
        consent_text: None,
        description: "Fund-level access to one fund. Syntax unconfirmed; use Target::Custom if Class spells it otherwise.",
        rule: Some("exactly one target when any access specifier is requested"),
        confidence: Confidence::Unconfirmed,
    },
    ScopeInfo {
        scope: "business.fund.list",
        consent_text: Some("Read summary fund information"),
        description: "List summarised data of funds in the business.",
        rule: Some("needs a target"),
        confidence: Confidence::Inferred,
    },
    ScopeInfo {
        scope: "business.fund.create",
        consent_text: Some("Create new funds"),
        description: "Create new funds in the business.",
        rule: Some("needs a target"),
        confidence: Confidence::Inferred,
    },
    ScopeInfo {
        scope: "fund.details.read",
        consent_text: Some("Read basic fund information"),
        description: "View basic fund details.",
        rule: Some("needs a target"),
        confidence: Confidence::Inferred,
    },
    ScopeInfo {
        scope: "fund.details.maintain",
        consent_text: None,
        description: "View and maintain basic fund details (consent text not published).",
        rule: Some("needs a target"),
        confidence: Confidence::Unconfirmed,
    },
    ScopeInfo {
        scope: "fund.member.read",
        consent_text: Some("Read member information"),
        description: "View member details.",
        rule: Some("needs a target"),
        confidence: Confidence::Inferred,
    },
    ScopeInfo {
        scope: "fund.member.maintain",
        consent_text: None,
        description: "View and maintain member details (consent text not published).",
        rule: Some("needs a target"),
        confidence: Confidence::Unconfirmed,
    },
    ScopeInfo {
        scope: "fund.read",
        consent_text: Some("Read all fund information"),
        description: "View all fund information.",
        rule: Some("needs a target"),
        confidence: Confidence::Inferred,
    },
    ScopeInfo {
        scope: "fund.maintain",
        consent_text: Some("Read and modify all fund information"),
        description: "View and maintain all fund information.",
        rule: Some("needs a target"),
        confidence: Confidence::Inferred,
    },
];
