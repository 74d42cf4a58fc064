//! The key-set cache a client owns and lends to its token flows.

use class_oauth_core::flow::KeyCache;
use class_oauth_core::jwks::KeySetCache;

/// The key-set cache a client owns: one [`KeySetCache`] behind a lock, for the
/// provider's current key-set URI (a new URI starts an empty cache). Token flows borrow it
/// for a moment ([`KeyCache`]); clones of a client share it.
#[derive(Debug)]
pub struct KeySets {
    slot: std::sync::Mutex<Option<KeySetCache>>,
    max_body: usize,
}

impl KeySets {
    /// An empty cache whose key-set fetches read at most `max_body` bytes.
    #[must_use]
    pub fn new(max_body: usize) -> Self {
        Self {
            slot: std::sync::Mutex::new(None),
            max_body,
        }
    }

    /// Replaces the cache (serverless callers restoring an exported snapshot, or tests).
    pub fn set(&self, cache: KeySetCache) {
        *self.lock() = Some(cache);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<KeySetCache>> {
        // The cache is plain data: a panic while it was held leaves it usable.
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyCache for KeySets {
    fn with_cache(&self, jwks_uri: &url::Url, f: &mut dyn FnMut(&mut KeySetCache)) {
        let mut slot = self.lock();
        let cache = match &mut *slot {
            Some(cache) if cache.jwks_uri() == jwks_uri => cache,
            other => {
                let mut cache = KeySetCache::new(jwks_uri.clone());
                cache.max_body = self.max_body;
                other.insert(cache)
            }
        };
        f(cache);
    }
}
