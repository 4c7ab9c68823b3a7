//! What a page did, recorded from the DevTools events: console messages, failed requests,
//! loads.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// A message the page logged: `console.*`, an uncaught exception, or the browser's own
/// (a failed resource, a CSP violation).
#[derive(Debug, Clone)]
pub struct ConsoleMessage {
    /// `error`, `warning`, `info`, `log`, `debug`, …
    pub level: String,
    /// `console-api`, `exception`, or the browser's: `network`, `security`, `javascript`, …
    pub source: String,
    pub text: String,
    /// The resource concerned, when there is one.
    pub url: Option<String>,
}

impl fmt::Display for ConsoleMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} {}] {}", self.level, self.source, self.text)?;
        if let Some(url) = &self.url {
            write!(f, " ({url})")?;
        }
        Ok(())
    }
}

/// A request that got an answer of 400 or more, or none (refused, blocked, broken).
#[derive(Debug, Clone)]
pub struct FailedRequest {
    pub method: String,
    pub url: String,
    /// The answer's status, when one came.
    pub status: Option<u16>,
    /// Why none came: `net::ERR_CONNECTION_REFUSED`, `net::ERR_BLOCKED_BY_CLIENT (csp)`, …
    pub error: Option<String>,
}

impl fmt::Display for FailedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.method, self.url)?;
        match (&self.status, &self.error) {
            (Some(status), _) => write!(f, "{status}"),
            (None, Some(error)) => write!(f, "{error}"),
            (None, None) => write!(f, "failed"),
        }
    }
}

/// What the page did, from the events read so far.
#[derive(Default)]
pub(super) struct Record {
    pub console: Vec<ConsoleMessage>,
    /// requestId → (method, url), to name the request a failure event concerns.
    requests: HashMap<String, (String, String)>,
    pub failed: Vec<FailedRequest>,
    /// `Page.loadEventFired` events seen.
    pub loads: u64,
    /// URL parts of requests expected to fail.
    pub expected: Vec<String>,
}

impl Record {
    pub fn event(&mut self, method: &str, params: &Value) {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match method {
            "Page.loadEventFired" => self.loads += 1,
            "Runtime.consoleAPICalled" => {
                let args = params["args"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let words: Vec<String> = args.iter().map(remote_object).collect();
                let level = match params["type"].as_str() {
                    Some("warning") => "warning",
                    Some("error" | "assert") => "error",
                    Some(other) => other,
                    None => "log",
                };
                self.console.push(ConsoleMessage {
                    level: level.to_owned(),
                    source: "console-api".to_owned(),
                    text: words.join(" "),
                    url: None,
                });
            }
            "Runtime.exceptionThrown" => {
                let details = &params["exceptionDetails"];
                let description = details["exception"]["description"].as_str();
                self.console.push(ConsoleMessage {
                    level: "error".to_owned(),
                    source: "exception".to_owned(),
                    text: description.map_or_else(|| text(&details["text"]), str::to_owned),
                    url: details["url"].as_str().map(str::to_owned),
                });
            }
            "Log.entryAdded" => {
                let entry = &params["entry"];
                self.console.push(ConsoleMessage {
                    level: text(&entry["level"]),
                    source: text(&entry["source"]),
                    text: text(&entry["text"]),
                    url: entry["url"].as_str().map(str::to_owned),
                });
            }
            "Network.requestWillBeSent" => {
                let request = &params["request"];
                self.requests.insert(
                    text(&params["requestId"]),
                    (text(&request["method"]), text(&request["url"])),
                );
            }
            "Network.responseReceived" => {
                let response = &params["response"];
                let status = response["status"].as_u64().unwrap_or_default();
                if status >= 400 {
                    let method = self.method_of(&params["requestId"]);
                    self.failed.push(FailedRequest {
                        method,
                        url: text(&response["url"]),
                        status: u16::try_from(status).ok(),
                        error: None,
                    });
                }
            }
            // A request the page gave up (navigating away, closing an EventSource) is no
            // failure; one the browser blocked (CSP, mixed content) is.
            "Network.loadingFailed" if params["canceled"] != true => {
                let id = text(&params["requestId"]);
                let (method, url) = self.requests.get(&id).cloned().unwrap_or_default();
                let mut error = text(&params["errorText"]);
                if let Some(reason) = params["blockedReason"].as_str() {
                    error = format!("{error} ({reason})");
                }
                self.failed.push(FailedRequest {
                    method,
                    url,
                    status: None,
                    error: Some(error),
                });
            }
            _ => {}
        }
    }

    fn method_of(&self, id: &Value) -> String {
        let id = id.as_str().unwrap_or_default();
        self.requests
            .get(id)
            .map_or_else(|| "GET".to_owned(), |(method, _)| method.clone())
    }

    pub fn is_expected(&self, url: &str) -> bool {
        self.expected.iter().any(|part| url.contains(part.as_str()))
    }
}

/// A console argument as text: its value, else its description (`Error: … at …`).
fn remote_object(object: &Value) -> String {
    match (&object["value"], object["description"].as_str()) {
        (Value::String(s), _) => s.clone(),
        (Value::Null, Some(description)) => description.to_owned(),
        (Value::Null, None) => object["type"].as_str().unwrap_or("undefined").to_owned(),
        (value, _) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_failures_but_cancellations() {
        let mut record = Record::default();
        let sent = |id: &str, url: &str| json!({ "requestId": id, "request": { "method": "GET", "url": url } });
        record.event("Network.requestWillBeSent", &sent("1", "http://h/a"));
        record.event("Network.requestWillBeSent", &sent("2", "http://h/b"));
        record.event("Network.requestWillBeSent", &sent("3", "http://h/c"));
        record.event(
            "Network.responseReceived",
            &json!({ "requestId": "1", "response": { "url": "http://h/a", "status": 401 } }),
        );
        record.event(
            "Network.loadingFailed",
            &json!({ "requestId": "2", "errorText": "net::ERR_BLOCKED_BY_CLIENT", "canceled": false, "blockedReason": "csp" }),
        );
        record.event(
            "Network.loadingFailed",
            &json!({ "requestId": "3", "errorText": "net::ERR_ABORTED", "canceled": true }),
        );
        let failed: Vec<String> = record.failed.iter().map(ToString::to_string).collect();
        assert_eq!(
            failed,
            [
                "GET http://h/a: 401",
                "GET http://h/b: net::ERR_BLOCKED_BY_CLIENT (csp)"
            ]
        );
    }

    #[test]
    fn records_console_messages() {
        let mut record = Record::default();
        record.event(
            "Runtime.consoleAPICalled",
            &json!({ "type": "error", "args": [{ "type": "string", "value": "boom" }, { "type": "number", "value": 3 }] }),
        );
        record.event(
            "Runtime.exceptionThrown",
            &json!({ "exceptionDetails": { "text": "Uncaught", "exception": { "description": "TypeError: x is null" } } }),
        );
        record.event(
            "Log.entryAdded",
            &json!({ "entry": { "source": "network", "level": "error", "text": "Failed to load resource", "url": "http://h/a" } }),
        );
        let console: Vec<String> = record.console.iter().map(ToString::to_string).collect();
        assert_eq!(
            console,
            [
                "[error console-api] boom 3",
                "[error exception] TypeError: x is null",
                "[error network] Failed to load resource (http://h/a)",
            ]
        );
    }
}
