//! Building the emulator's HTTP answers.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

/// A response under construction that remembers its status and redirect target.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    /// The `content-type` given (wiremock's string body would otherwise say
    /// `text/plain`, and a browser would show an HTML page as text).
    pub(crate) content_type: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) template: ResponseTemplate,
}

impl Reply {
    pub(crate) fn new(status: u16) -> Self {
        Self {
            status,
            location: None,
            content_type: None,
            body: None,
            template: ResponseTemplate::new(status),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        if name == "location" {
            self.location = Some(value.to_owned());
        }
        if name == "content-type" {
            self.content_type = Some(value.to_owned());
        }
        self.template = self.template.insert_header(name, value);
        self
    }

    pub(crate) fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The response, its body typed as the `content-type` header says.
    pub(crate) fn into_template(self) -> ResponseTemplate {
        match self.body {
            Some(body) => self.template.set_body_raw(
                body.into_bytes(),
                self.content_type.as_deref().unwrap_or("text/plain"),
            ),
            None => self.template,
        }
    }

    pub(crate) fn delay(mut self, d: Duration) -> Self {
        self.template = self.template.set_delay(d);
        self
    }
}

pub(crate) fn oauth_error(status: u16, code: &str, description: &str) -> Reply {
    Reply::new(status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(json!({"error": code, "error_description": description}).to_string())
}

pub(crate) fn json_response(status: u16, body: &Value) -> Reply {
    Reply::new(status)
        .header("content-type", "application/json;charset=UTF-8")
        .header("cache-control", "no-cache")
        .header("pragma", "no-cache")
        .body(body.to_string())
}

pub(crate) fn redirect(location: &str) -> Reply {
    Reply::new(302).header("location", location)
}

pub(crate) fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!(
        "{uri}{}{}",
        if uri.contains('?') { "&" } else { "?" },
        s.finish()
    )
}
