//! The consent page ([`EmulatorConfig::consent_page`](crate::EmulatorConfig::consent_page)):
//! what Class shows between the authorization request and the redirect back. The user
//! (a person, or a browser test) answers Allow or Deny, and for `target:b` picks the
//! business. Each page carries a one-time ticket that names the request it answers.

use std::collections::HashMap;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use wiremock::Request;

use crate::User;
use crate::reply::Reply;
use crate::state::{State, random};

/// Where the consent form posts.
pub(crate) const PATH: &str = "/connect/authorize/consent";

/// The user's answer on the consent page.
pub(crate) enum Answer {
    /// Allow, with the business picked (for `target:b`).
    Allow { picked: Option<String> },
    /// Deny.
    Deny,
}

impl State {
    /// The page asking `user` to let `client_id` reach `business` with `scopes`.
    pub(crate) fn consent_page(
        &mut self,
        request: &HashMap<String, String>,
        user: &User,
        client_id: &str,
        scopes: &[String],
        business: &str,
    ) -> Reply {
        let ticket = random();
        self.consents.insert(ticket.clone(), request.clone());
        let name = |code: &str| {
            self.business(code)
                .map_or_else(|| code.to_owned(), |b| format!("{} ({code})", b.name))
        };
        let which = if scopes.iter().any(|s| s == "target:b") {
            let options: String = user
                .businesses
                .iter()
                .map(|b| format!("<option value=\"{}\">{}</option>", attr(b), text(&name(b))))
                .collect();
            format!("<label>Business <select name=\"business\">{options}</select></label>")
        } else {
            format!(
                "<p>Business: <strong>{}</strong></p>",
                text(&name(business))
            )
        };
        let asked: String = scopes
            .iter()
            .map(|s| format!("<li>{}</li>", text(s)))
            .collect();
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Class: allow access?</title>\
             </head><body><h1>Allow {client} to access your Class data?</h1>\
             <p>Signed in as {user}.</p><form method=\"post\" action=\"{PATH}\">\
             <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">{which}\
             <p>It asks for:</p><ul>{asked}</ul>\
             <button id=\"allow\" name=\"decision\" value=\"allow\">Allow</button> \
             <button id=\"deny\" name=\"decision\" value=\"deny\">Deny</button></form></body></html>",
            client = text(client_id),
            user = text(&user.username),
            ticket = attr(&ticket),
        );
        Reply::new(200)
            .header("content-type", "text/html;charset=utf-8")
            .header("cache-control", "no-store")
            .body(html)
    }

    /// `POST /connect/authorize/consent`: the answer to a consent page, once.
    pub(crate) fn consent(&mut self, req: &Request) -> Reply {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let Some(request) = form.get("ticket").and_then(|t| self.consents.remove(t)) else {
            return Reply::new(400).header("content-type", "text/html").body(
                "<html><body>This consent was already answered, or never asked</body></html>",
            );
        };
        let answer = match form.get("decision").map(String::as_str) {
            Some("allow") => Answer::Allow {
                picked: form.get("business").cloned(),
            },
            _ => Answer::Deny,
        };
        self.authorize(&request, Some(answer))
    }
}
