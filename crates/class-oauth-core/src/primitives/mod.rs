//! Layer 1, primitives: the values every other layer speaks in. Secrets as redacting
//! newtypes, times, the scope grammar, URL and identifier newtypes, and the error of a
//! request that cannot be built ([`InputError`](types::InputError)). Imports nothing
//! from the layers above.

pub mod scope;
pub mod secret;
pub(crate) mod text;
pub mod time;
pub mod types;
