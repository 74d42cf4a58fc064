//! Layer 5, the flow vocabulary: the one protocol every multi-step operation speaks, the
//! caches included. A [`Flow`] says what to do next ([`Flow::poll`]): send a request,
//! wait, or stop with a result; its driver performs the step and reports back
//! ([`Flow::handle_response`] or [`Flow::handle_transport_failure`]). It sits below the
//! provider layer so that the discovery and key-set caches are flows too; the drivers
//! and the composite flows are in [`crate::flow`], where these are re-exported.

use std::time::{Duration, SystemTime};

use http::{Request, Response};

use crate::error::Error;

/// What the driver should do next. Exhaustive on purpose: a driver must do every step,
/// so a new kind of step is a breaking change, and no driver carries an arm for steps it
/// cannot know.
#[derive(Debug)]
#[must_use]
#[allow(
    clippy::exhaustive_enums,
    reason = "every driver matches every step; a new step must break them"
)]
pub enum Step<T> {
    /// Send this request and report the outcome.
    Send(Request<Vec<u8>>),
    /// Wait this long, then poll again.
    Wait(Duration),
    /// The flow is over.
    Done(Result<T, Error>),
}

/// What a flow does after a transport failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// Stop; the driver returns the transport error.
    Abort,
    /// Carry on (e.g. a failed key-set refetch: the last good keys are used).
    Continue,
}

/// A multi-step operation.
pub trait Flow {
    /// The result.
    type Output;

    /// The next step at `now`.
    fn poll(&mut self, now: SystemTime) -> Step<Self::Output>;

    /// The response to the last [`Step::Send`].
    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>);

    /// The last [`Step::Send`] failed in transport (connect, timeout, reset).
    fn handle_transport_failure(&mut self, now: SystemTime) -> OnFailure;
}

/// A flow behind a pointer is the flow: `Box<dyn Flow>` for flows chosen at run time,
/// and `&mut F` for a cache the driver keeps behind its lock and drives in place.
macro_rules! forward_flow {
    ($($pointer:ty),*) => {$(
        impl<F: Flow + ?Sized> Flow for $pointer {
            type Output = F::Output;
            fn poll(&mut self, now: SystemTime) -> Step<Self::Output> {
                (**self).poll(now)
            }
            fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
                (**self).handle_response(now, response);
            }
            fn handle_transport_failure(&mut self, now: SystemTime) -> OnFailure {
                (**self).handle_transport_failure(now)
            }
        }
    )*};
}

forward_flow!(Box<F>, &mut F);
