//! Multi-step operations as sans-IO state machines, and the transport-failure type
//! every driver reports.
//!
//! A [`Flow`] says what to do next ([`Flow::poll`]): send a request, wait, or stop
//! with a result. The driver performs the step and reports back
//! ([`Flow::handle_response`] or [`Flow::handle_transport_failure`]). Every protocol
//! decision (which request, how to parse it, whether to refetch keys, whether to retry
//! after a 429) is made here; a driver only moves bytes, reads the clock and sleeps.
//! Drivers: [`drive_blocking`] (closures; the in-memory fixture replay uses it) and
//! `class-oauth-client`'s `drive` (async, and blocking through `pollster`), which both
//! transports use.
//!
//! Call order: `poll` until [`Step::Done`]; after every [`Step::Send`] report exactly
//! one outcome before polling again; after [`Step::Wait`] poll again once the time has
//! passed.
//!
//! The module is split by concern: the [`Flow`] trait, [`drive_blocking`] and
//! [`Exchange`] here; transport failures and limits in `transport`; the token flow
//! (token request plus ID-token validation and key refetch) in `token`; the Class API
//! flow (one 429 waited out) in `api`; the client configuration that builds every
//! flow a high-level client needs ([`ClientConfig`]) in `config`. Everything is
//! re-exported at `crate::flow`. This is the top layer: it imports from every layer
//! below and nothing imports from it.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{Request, Response};

use crate::error::Error;

mod api;
mod config;
mod token;
mod transport;

pub use crate::step::{Flow, OnFailure, Step};
pub use api::ApiFlow;
pub use config::{AuthorizeOptions, Callback, ClientConfig};
pub use token::{KeyCache, SharedKeySet, TokenFlow, ValidatedTokens};
pub use transport::{
    DriveError, ProxyMode, ProxySettings, RootCerts, TransportConfig, TransportError,
    TransportErrorKind, loggable_uri,
};

/// Drives a flow with closures: the blocking driver (and the in-memory replay).
pub fn drive_blocking<F: Flow>(
    mut flow: F,
    mut now: impl FnMut() -> SystemTime,
    mut send: impl FnMut(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>,
    mut sleep: impl FnMut(Duration),
) -> Result<F::Output, DriveError> {
    loop {
        match flow.poll(now()) {
            Step::Done(result) => return result.map_err(DriveError::from),
            Step::Wait(d) => sleep(d),
            Step::Send(req) => match send(req) {
                Ok(resp) => flow.handle_response(now(), resp),
                Err(e) => {
                    if flow.handle_transport_failure(now()) == OnFailure::Abort {
                        return Err(e.into());
                    }
                }
            },
        }
    }
}

type Parser<T> = Box<dyn FnOnce(&Response<Vec<u8>>, SystemTime) -> Result<T, Error> + Send>;

/// A single request and its parser: most operations.
pub struct Exchange<T> {
    request: Option<Result<Request<Vec<u8>>, Error>>,
    parse: Option<Parser<T>>,
    result: Option<Result<T, Error>>,
}

impl<T> fmt::Debug for Exchange<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

impl<T> Exchange<T> {
    /// A flow that sends `request` (or fails with its build error) and parses the
    /// response with `parse`.
    pub fn new(
        request: Result<Request<Vec<u8>>, Error>,
        parse: impl FnOnce(&Response<Vec<u8>>, SystemTime) -> Result<T, Error> + Send + 'static,
    ) -> Self {
        Self {
            request: Some(request),
            parse: Some(Box::new(parse)),
            result: None,
        }
    }
}

impl<T> Flow for Exchange<T> {
    type Output = T;

    fn poll(&mut self, _now: SystemTime) -> Step<T> {
        if let Some(r) = self.request.take() {
            return match r {
                Ok(req) => Step::Send(req),
                Err(e) => Step::Done(Err(e)),
            };
        }
        Step::Done(self.result.take().unwrap_or_else(|| Err(misuse())))
    }

    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
        if let Some(parse) = self.parse.take() {
            self.result = Some(parse(&response, now));
        }
    }

    fn handle_transport_failure(&mut self, _now: SystemTime) -> OnFailure {
        OnFailure::Abort
    }
}

fn misuse() -> Error {
    crate::error::InputError::InvalidValue {
        field: "flow",
        detail: "polled after completion or without a response".into(),
    }
    .into()
}
