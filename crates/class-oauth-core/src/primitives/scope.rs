//! The Class scope grammar as types.
//!
//! Four families (fact sheet section 8): the OpenID Connect scopes (`openid`, `profile`,
//! `email`, `address`, `phone`), Class's `class_profile`, `offline_access`, the `target`
//! value that names the business (or fund) a grant covers, and eight access
//! specifiers. Anything else is kept verbatim in [`Scope::Other`], so every valid
//! scope token round-trips exactly: `Scope::parse(s)?.to_string() == s`.
//!
//! Rules checked by [`Scopes::validate`] (and so by every request that sends scopes):
//! - an access specifier needs exactly one `target` value;
//! - `class_profile` needs `openid`;
//! - with [`ScopesBuilder::require_refresh_token`], `offline_access` must be present.
//!
//! # Fund-level targets are unconfirmed
//! Class documents `target:b` (the user picks the business at consent) and
//! `target:b/<BusinessCode>`. The fund-level form is not documented; this crate
//! assumes `target:f/<BusinessCode>/<FundCode>` ([`Target::Fund`]). If PIE shows
//! another spelling, use [`Target::Custom`] with the exact token: it is sent verbatim
//! and still counts as the one target an access specifier needs.

use std::fmt;
use std::str::FromStr;

/// A scope token violates RFC 6749 3.3 or a Class rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// A scope token is empty or has a character outside RFC 6749's NQCHAR set.
    #[error(
        "`{0}` is not a valid scope token (RFC 6749 3.3: printable ASCII, no space, quote or backslash)"
    )]
    InvalidToken(String),
    /// A business or fund code is empty or contains `/` or whitespace.
    #[error("`{0}` is not a valid Class business or fund code")]
    InvalidCode(String),
    /// Access specifiers were requested without a `target`.
    #[error(
        "access specifier `{0}` needs a target (add target:b to let the user pick the business, or target:b/<CODE>)"
    )]
    AccessWithoutTarget(String),
    /// More than one `target` was requested: a Class grant covers one business.
    #[error(
        "only one target may be requested (found {0}); a Class grant covers one business, so authorize each business separately"
    )]
    MultipleTargets(usize),
    /// `class_profile` without `openid`.
    #[error("class_profile only takes effect together with openid; add the openid scope")]
    ClassProfileWithoutOpenId,
    /// A refresh token was required but `offline_access` is missing.
    #[error(
        "Class issues a refresh token only when offline_access is requested; add offline_access"
    )]
    RefreshNeedsOfflineAccess,
    /// A narrowed scope (refresh) asks for something the grant does not have.
    #[error("scope `{0}` was not granted; a refresh may only narrow the granted scope")]
    NotASubset(String),
}

fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

macro_rules! code_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the code: non-empty scope characters, no `/`. Case is preserved.
            pub fn new(code: impl Into<String>) -> Result<Self, ScopeError> {
                let code = code.into();
                if is_scope_token(&code) && !code.contains('/') {
                    Ok(Self(code))
                } else {
                    Err(ScopeError::InvalidCode(code))
                }
            }

            /// The code as Class spells it.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ScopeError;
            fn try_from(s: String) -> Result<Self, ScopeError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(c: $name) -> Self {
                c.0
            }
        }
    };
}

code_type! {
    /// A Class business code such as `OAUTH_TEST` (case-preserving, opaque).
    BusinessCode
}
code_type! {
    /// A Class fund code (used only by the unconfirmed fund-level target).
    FundCode
}

/// The `target` scope value: which business (or fund) the grant covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// `target:b`: the user picks the business at consent; the granted scope then
    /// carries `target:b/<CODE>`.
    AnyBusiness,
    /// `target:b/<CODE>`: a named business.
    Business(BusinessCode),
    /// `target:f/<BUSINESS>/<FUND>`: fund level. **Unconfirmed syntax** (see module docs).
    Fund {
        /// The business holding the fund.
        business: BusinessCode,
        /// The fund.
        fund: FundCode,
    },
    /// Any other `target:` token, sent verbatim (for spellings confirmed later).
    Custom(String),
}

impl Target {
    /// A custom target token; it must start with `target:` and be a valid scope token.
    pub fn custom(token: impl Into<String>) -> Result<Self, ScopeError> {
        let token = token.into();
        if token.starts_with("target:") && is_scope_token(&token) {
            Ok(Self::Custom(token))
        } else {
            Err(ScopeError::InvalidToken(token))
        }
    }

    /// The business this target names, if any.
    #[must_use]
    pub fn business_code(&self) -> Option<&BusinessCode> {
        match self {
            Self::Business(c) | Self::Fund { business: c, .. } => Some(c),
            Self::AnyBusiness | Self::Custom(_) => None,
        }
    }

    fn parse(rest: &str, whole: &str) -> Self {
        let custom = || Self::Custom(whole.to_owned());
        if rest == "b" {
            return Self::AnyBusiness;
        }
        if let Some(code) = rest.strip_prefix("b/") {
            return BusinessCode::new(code).map_or_else(|_| custom(), Self::Business);
        }
        if let Some(path) = rest.strip_prefix("f/") {
            if let Some((b, f)) = path.split_once('/') {
                if let (Ok(business), Ok(fund)) = (BusinessCode::new(b), FundCode::new(f)) {
                    return Self::Fund { business, fund };
                }
            }
        }
        custom()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyBusiness => f.write_str("target:b"),
            Self::Business(c) => write!(f, "target:b/{c}"),
            Self::Fund { business, fund } => write!(f, "target:f/{business}/{fund}"),
            Self::Custom(s) => f.write_str(s),
        }
    }
}

/// The eight Class access specifiers (resource permissions), from the portal's
/// OpenAPI `securitySchemes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AccessSpecifier {
    /// `business.fund.list`: list summarised data of funds in the business.
    BusinessFundList,
    /// `business.fund.create`: create new funds in the business.
    BusinessFundCreate,
    /// `fund.details.read`: view basic fund details.
    FundDetailsRead,
    /// `fund.details.maintain`: view and maintain basic fund details.
    FundDetailsMaintain,
    /// `fund.member.read`: view member details.
    FundMemberRead,
    /// `fund.member.maintain`: view and maintain member details.
    FundMemberMaintain,
    /// `fund.read`: view all fund information.
    FundRead,
    /// `fund.maintain`: view and maintain all fund information.
    FundMaintain,
}

impl AccessSpecifier {
    /// All eight, in catalogue order.
    pub const ALL: [Self; 8] = [
        Self::BusinessFundList,
        Self::BusinessFundCreate,
        Self::FundDetailsRead,
        Self::FundDetailsMaintain,
        Self::FundMemberRead,
        Self::FundMemberMaintain,
        Self::FundRead,
        Self::FundMaintain,
    ];

    /// The scope string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BusinessFundList => "business.fund.list",
            Self::BusinessFundCreate => "business.fund.create",
            Self::FundDetailsRead => "fund.details.read",
            Self::FundDetailsMaintain => "fund.details.maintain",
            Self::FundMemberRead => "fund.member.read",
            Self::FundMemberMaintain => "fund.member.maintain",
            Self::FundRead => "fund.read",
            Self::FundMaintain => "fund.maintain",
        }
    }
}

/// One scope token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `openid`: an ID token ("Know your identity").
    OpenId,
    /// `profile`: profile claims in UserInfo.
    Profile,
    /// `email`: the email claim in the ID token and UserInfo.
    Email,
    /// `address`: the address claim in UserInfo.
    Address,
    /// `phone`: the phone_number claim in UserInfo.
    Phone,
    /// `class_profile`: business and role claims in UserInfo (needs `openid`).
    ClassProfile,
    /// `offline_access`: a refresh token.
    OfflineAccess,
    /// A `target:` value.
    Target(Target),
    /// An access specifier.
    Access(AccessSpecifier),
    /// Any other token, kept verbatim.
    Other(String),
}

impl Scope {
    /// Parses one token. Fails only when the token is not an RFC 6749 scope token.
    pub fn parse(token: &str) -> Result<Self, ScopeError> {
        if !is_scope_token(token) {
            return Err(ScopeError::InvalidToken(token.to_owned()));
        }
        Ok(match token {
            "openid" => Self::OpenId,
            "profile" => Self::Profile,
            "email" => Self::Email,
            "address" => Self::Address,
            "phone" => Self::Phone,
            "class_profile" => Self::ClassProfile,
            "offline_access" => Self::OfflineAccess,
            t => {
                if let Some(rest) = t.strip_prefix("target:") {
                    Self::Target(Target::parse(rest, t))
                } else if let Some(a) = AccessSpecifier::ALL.iter().find(|a| a.as_str() == t) {
                    Self::Access(*a)
                } else {
                    Self::Other(t.to_owned())
                }
            }
        })
    }

    /// The text Class shows on its consent screen for this scope, when known.
    #[must_use]
    pub fn consent_text(&self) -> Option<&'static str> {
        let s = self.to_string();
        let key = match self {
            Self::Target(_) => "target:b",
            _ => s.as_str(),
        };
        CATALOGUE
            .iter()
            .find(|e| e.scope == key)
            .and_then(|e| e.consent_text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenId => "openid",
            Self::Profile => "profile",
            Self::Email => "email",
            Self::Address => "address",
            Self::Phone => "phone",
            Self::ClassProfile => "class_profile",
            Self::OfflineAccess => "offline_access",
            Self::Access(a) => a.as_str(),
            Self::Target(t) => return t.fmt(f),
            Self::Other(s) => s,
        })
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        Self::parse(s)
    }
}

impl From<AccessSpecifier> for Scope {
    fn from(a: AccessSpecifier) -> Self {
        Self::Access(a)
    }
}

impl From<Target> for Scope {
    fn from(t: Target) -> Self {
        Self::Target(t)
    }
}

/// A set of scopes, serialised space-delimited (RFC 6749 3.3) in the order they were
/// added. Compared and hashed as a set: `openid email` equals `email openid`
/// (RFC 6749 3.3: "the order does not matter").
#[derive(Clone, Debug, Default)]
pub struct Scopes(Vec<Scope>);

impl PartialEq for Scopes {
    fn eq(&self, other: &Self) -> bool {
        // No repeats on either side, so equal sizes and inclusion make equal sets.
        self.0.len() == other.0.len() && self.0.iter().all(|s| other.contains(s))
    }
}

impl Eq for Scopes {}

impl std::hash::Hash for Scopes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.canonical().hash(state);
    }
}

impl Scopes {
    /// A builder that checks the Class rules on `build()`.
    pub fn builder() -> ScopesBuilder {
        ScopesBuilder::default()
    }

    /// Collects scopes, dropping repeats (first occurrence wins). No rules are checked.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut out = Self::default();
        for s in scopes {
            out.insert(s);
        }
        out
    }

    /// Parses a space-delimited list (any ASCII whitespace separates; repeats dropped).
    /// No rules are checked: granted scopes are whatever the server says.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        // Straight into the one vector (no intermediate collection to copy from).
        let mut out = Self::default();
        for token in s.split_ascii_whitespace() {
            out.insert(Scope::parse(token)?);
        }
        Ok(out)
    }

    /// Adds a scope unless present; returns whether it was added.
    pub fn insert(&mut self, scope: Scope) -> bool {
        if self.0.contains(&scope) {
            false
        } else {
            self.0.push(scope);
            true
        }
    }

    /// Is the scope present?
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// No scopes?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `target` values.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.0.iter().filter_map(|s| match s {
            Scope::Target(t) => Some(t),
            _ => None,
        })
    }

    /// The business code a granted `target:b/<CODE>` names (the business the user
    /// picked when `target:b` was requested).
    #[must_use]
    pub fn business_code(&self) -> Option<&BusinessCode> {
        self.targets().find_map(Target::business_code)
    }

    /// Checks the Class rules (module docs).
    pub fn validate(&self) -> Result<(), ScopeError> {
        let targets = self.targets().count();
        if let Some(access) = self.0.iter().find(|s| matches!(s, Scope::Access(_))) {
            if targets == 0 {
                return Err(ScopeError::AccessWithoutTarget(access.to_string()));
            }
        }
        if targets > 1 {
            return Err(ScopeError::MultipleTargets(targets));
        }
        if self.contains(&Scope::ClassProfile) && !self.contains(&Scope::OpenId) {
            return Err(ScopeError::ClassProfileWithoutOpenId);
        }
        Ok(())
    }

    /// Fails unless `offline_access` is present (Class's condition for a refresh token).
    pub fn require_offline_access(&self) -> Result<(), ScopeError> {
        if self.contains(&Scope::OfflineAccess) {
            Ok(())
        } else {
            Err(ScopeError::RefreshNeedsOfflineAccess)
        }
    }

    /// The scopes sorted and space-delimited: the same text for the same set, whatever
    /// the order (for keys, such as a store's tenant key).
    #[must_use]
    pub fn canonical(&self) -> String {
        let mut tokens: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        tokens.sort_unstable();
        tokens.join(" ")
    }

    /// Fails with the first scope of `self` that `granted` lacks.
    pub fn check_subset_of(&self, granted: &Self) -> Result<(), ScopeError> {
        match self.0.iter().find(|s| !granted.contains(s)) {
            Some(s) => Err(ScopeError::NotASubset(s.to_string())),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            s.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for Scopes {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        Self::parse(s)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Builds a [`Scopes`] and checks the Class rules.
///
/// ```
/// use class_oauth_core::scope::{AccessSpecifier, Scopes, Target};
/// let scopes = Scopes::builder()
///     .openid()
///     .target(Target::AnyBusiness)
///     .access(AccessSpecifier::FundRead)
///     .offline_access()
///     .require_refresh_token()
///     .build()?;
/// assert_eq!(scopes.to_string(), "openid target:b fund.read offline_access");
///
/// let err = Scopes::builder().access(AccessSpecifier::FundRead).build().unwrap_err();
/// assert!(err.to_string().contains("needs a target"));
/// # Ok::<(), class_oauth_core::scope::ScopeError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ScopesBuilder {
    scopes: Scopes,
    require_refresh: bool,
}

impl ScopesBuilder {
    /// Adds any scope.
    pub fn scope(mut self, scope: impl Into<Scope>) -> Self {
        self.scopes.insert(scope.into());
        self
    }
    /// Adds `openid`.
    pub fn openid(self) -> Self {
        self.scope(Scope::OpenId)
    }
    /// Adds `profile`.
    pub fn profile(self) -> Self {
        self.scope(Scope::Profile)
    }
    /// Adds `email`.
    pub fn email(self) -> Self {
        self.scope(Scope::Email)
    }
    /// Adds `class_profile`.
    pub fn class_profile(self) -> Self {
        self.scope(Scope::ClassProfile)
    }
    /// Adds `offline_access`.
    pub fn offline_access(self) -> Self {
        self.scope(Scope::OfflineAccess)
    }
    /// Adds a target.
    pub fn target(self, target: Target) -> Self {
        self.scope(Scope::Target(target))
    }
    /// Adds an access specifier.
    pub fn access(self, access: AccessSpecifier) -> Self {
        self.scope(Scope::Access(access))
    }
    /// Makes `build()` fail unless `offline_access` is present.
    pub fn require_refresh_token(mut self) -> Self {
        self.require_refresh = true;
        self
    }
    /// Checks the rules and returns the scopes.
    pub fn build(self) -> Result<Scopes, ScopeError> {
        self.scopes.validate()?;
        if self.require_refresh {
            self.scopes.require_offline_access()?;
        }
        Ok(self.scopes)
    }
}

mod catalogue;
pub use catalogue::{CATALOGUE, Confidence, ScopeInfo};

#[cfg(test)]
mod tests;
