//! The workspace README's Rust blocks as doc tests: `cargo test -p class-oauth-readme`
//! compiles every one (and runs those that need no network), so the README cannot drift
//! from the API. Nothing else lives here.

/// The README, whose code blocks rustdoc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct Readme;
