//! Typed extraction of JSON members, written once for the token response, UserInfo and
//! ID-token claims. A member of the wrong type is an error, never "absent"; each caller
//! turns [`WrongType`] into its own error (a malformed response, an invalid claim).
//! Also the `Debug` helpers that show a personal claim's presence, not its value.

use serde_json::{Map, Value};

/// What `null` means for a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Null {
    /// `null` is the same as absent (token responses, UserInfo).
    Absent,
    /// `null` is a wrong type (ID-token claims: strict).
    WrongType,
}

/// A member had another JSON type than expected.
#[derive(Debug)]
pub(crate) struct WrongType {
    expected: &'static str,
    found: &'static str,
}

impl WrongType {
    /// `expected a string, found a number`.
    pub(crate) fn detail(&self) -> String {
        format!("expected {}, found {}", self.expected, self.found)
    }
}

fn take(map: &mut Map<String, Value>, name: &str, null: Null) -> Option<Value> {
    match map.remove(name) {
        Some(Value::Null) if null == Null::Absent => None,
        other => other,
    }
}

fn wrong(expected: &'static str, found: &Value) -> WrongType {
    WrongType {
        expected,
        found: crate::body::json_type(found),
    }
}

/// Removes `name` and returns it as a string.
pub(crate) fn take_string(
    map: &mut Map<String, Value>,
    name: &str,
    null: Null,
) -> Result<Option<String>, WrongType> {
    match take(map, name, null) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong("a string", &other)),
    }
}

/// Removes `name` and returns it as a boolean; with `strings_too`, `"true"` and
/// `"false"` (any case) count as booleans (Class's UserInfo sends them so).
pub(crate) fn take_bool(
    map: &mut Map<String, Value>,
    name: &str,
    null: Null,
    strings_too: bool,
) -> Result<Option<bool>, WrongType> {
    match take(map, name, null) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if strings_too && s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if strings_too && s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(wrong("a boolean", &other)),
    }
}

/// Removes `name` and returns it if it is an object.
pub(crate) fn take_object(
    map: &mut Map<String, Value>,
    name: &str,
    null: Null,
) -> Result<Option<Value>, WrongType> {
    match take(map, name, null) {
        None => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(other) => Err(wrong("an object", &other)),
    }
}

/// `Some("[redacted]")` for a present value: a `Debug` field that says a personal claim
/// is there without printing it.
pub(crate) fn presence<T>(value: Option<&T>) -> Option<&'static str> {
    value.map(|_| "[redacted]")
}

/// The names of extra claims, without their values.
pub(crate) struct ClaimNames<'a>(pub(crate) &'a Map<String, Value>);

impl std::fmt::Debug for ClaimNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_errors_and_null_is_as_configured() {
        let mut m: Map<String, Value> =
            serde_json::from_str(r#"{"s":"x","n":1,"z":null,"b":"TRUE","o":{"a":1}}"#).unwrap();
        assert_eq!(
            take_string(&mut m, "s", Null::Absent).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(
            take_string(&mut m, "n", Null::Absent).unwrap_err().detail(),
            "expected a string, found a number"
        );
        assert_eq!(take_string(&mut m, "z", Null::Absent).unwrap(), None);
        m.insert("z".into(), Value::Null);
        assert!(take_string(&mut m, "z", Null::WrongType).is_err());
        assert_eq!(
            take_bool(&mut m, "b", Null::Absent, true).unwrap(),
            Some(true)
        );
        m.insert("b".into(), "true".into());
        assert!(take_bool(&mut m, "b", Null::Absent, false).is_err());
        assert!(take_object(&mut m, "o", Null::Absent).unwrap().is_some());
        assert_eq!(take_string(&mut m, "missing", Null::Absent).unwrap(), None);
    }
}
