//! Time as data: helpers that turn `SystemTime` into Unix seconds and back. The core
//! never reads a clock; callers pass `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 for times before it).
#[must_use]
pub fn to_unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` seconds after the Unix epoch (saturating far in the future).
#[must_use]
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 64))
}

/// `t + d`, saturating instead of panicking on overflow.
#[must_use]
pub fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).unwrap_or_else(|| from_unix(u64::MAX))
}

/// Serde adapter: `SystemTime` as Unix seconds.
pub mod unix_seconds {
    use std::time::SystemTime;

    /// Serialises as Unix seconds.
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_unix(*t))
    }

    /// Deserialises from Unix seconds.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(super::from_unix)
    }
}

/// Serde adapter: `Option<SystemTime>` as Unix seconds or null.
pub mod unix_seconds_opt {
    use std::time::SystemTime;

    /// Serialises as Unix seconds or null.
    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::to_unix(*t)),
            None => s.serialize_none(),
        }
    }

    /// Deserialises from Unix seconds or null.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        <Option<u64> as serde::Deserialize>::deserialize(d).map(|o| o.map(super::from_unix))
    }
}
