//! A tab: navigation, JavaScript, what it logged and which requests failed, screenshots.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::CALL_TIMEOUT;
use super::cdp::Cdp;
use super::record::{ConsoleMessage, FailedRequest, Record};

/// How often [`Page::wait_for`] evaluates its expression.
const POLL: Duration = Duration::from_millis(50);

/// One tab. Every failure panics: it is a test's.
pub struct Page {
    pub(super) cdp: Cdp,
    pub(super) record: Record,
}

impl Page {
    /// Navigates to `url` and waits (up to 30 s) for its load event.
    pub fn goto(&mut self, url: &str) {
        let loads = self.record.loads;
        let answer = self.cdp("Page.navigate", json!({ "url": url }));
        if let Some(error) = answer["errorText"].as_str().filter(|e| !e.is_empty()) {
            panic!("navigate to {url}: {error}");
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.record.loads == loads {
            let Page { cdp, record } = self;
            cdp.pump(deadline, &mut |method, params| record.event(method, params))
                .unwrap_or_else(|err| panic!("load {url}: {err}"));
        }
    }

    /// Evaluates `expression` every 50 ms until its value is truthy (an exception counts as
    /// not yet) and returns that value; panics after `limit` with the page's text and errors.
    pub fn wait_for(&mut self, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.evaluate(expression) {
                Ok(value) if truthy(&value) => return value,
                Ok(value) => format!("last value: {value}"),
                Err(exception) => format!("last exception: {exception}"),
            };
            if Instant::now() >= deadline {
                let text = self.evaluate("document.body ? document.body.innerText : ''");
                let text = text.map(|t| t.as_str().unwrap_or_default().to_owned());
                panic!(
                    "timed out after {limit:?} waiting for `{expression}` ({last})\n\
                     console:\n{}\nfailed requests:\n{}\npage text:\n{}",
                    lines(&self.console_messages()),
                    lines(&self.failed_requests()),
                    text.unwrap_or_default(),
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The value of `expression` (JSON; promises awaited; `undefined` is `null`). Panics when
    /// it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.evaluate(expression)
            .unwrap_or_else(|exception| panic!("`{expression}` threw: {exception}"))
    }

    /// The rendered text (`innerText`) of the first element matching the CSS `selector`;
    /// panics when none does.
    pub fn text(&mut self, selector: &str) -> String {
        let quoted = serde_json::to_string(selector).expect("a string");
        let expression = format!(
            "(() => {{ const e = document.querySelector({quoted}); return e && e.innerText; }})()"
        );
        match self.eval(&expression) {
            Value::String(text) => text,
            _ => panic!("no element matches {selector}"),
        }
    }

    /// Lays the page out in a `width` × `height` window (CSS pixels), as a desktop browser.
    pub fn set_viewport(&mut self, width: u32, height: u32) {
        self.emulate(width, height, false);
    }

    /// Lays the page out as a phone `width` CSS pixels wide: the `viewport` meta tag counts,
    /// touch events are on.
    pub fn set_phone_viewport(&mut self, width: u32, height: u32) {
        self.emulate(width, height, true);
    }

    fn emulate(&mut self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
        self.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({ "enabled": mobile, "maxTouchPoints": 5 }),
        );
    }

    /// Requests whose URL contains `url_part` may fail: they are left out of
    /// [`Page::failed_requests`], and the browser's "failed to load" lines about them out of
    /// [`Page::console_errors`].
    pub fn expect_failure(&mut self, url_part: &str) {
        self.record.expected.push(url_part.to_owned());
    }

    /// Everything the page logged so far.
    pub fn console_messages(&mut self) -> Vec<ConsoleMessage> {
        self.sync();
        self.record.console.clone()
    }

    /// The errors the page logged so far: `console.error`, uncaught exceptions, and the
    /// browser's (CSP violations, failed resources not expected).
    pub fn console_errors(&mut self) -> Vec<ConsoleMessage> {
        self.sync();
        let record = &self.record;
        record
            .console
            .iter()
            .filter(|m| m.level == "error")
            .filter(|m| {
                !(m.source == "network" && m.url.as_deref().is_some_and(|u| record.is_expected(u)))
            })
            .cloned()
            .collect()
    }

    /// The page's requests so far that failed (see [`FailedRequest`]), but those expected.
    pub fn failed_requests(&mut self) -> Vec<FailedRequest> {
        self.sync();
        let record = &self.record;
        record
            .failed
            .iter()
            .filter(|r| !record.is_expected(&r.url))
            .cloned()
            .collect()
    }

    /// Writes a PNG of the whole page (not just the window) to `path`, creating its directory.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let (width, height) = (size["width"].as_f64(), size["height"].as_f64());
        let (Some(width), Some(height)) = (width, height) else {
            panic!("no content size in {metrics}");
        };
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width.ceil(), "height": height.ceil(), "scale": 1 },
            }),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot in base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }

    /// Any DevTools command (`Emulation.setEmulatedMedia`, `Network.setCookie`, …): its result.
    pub fn cdp(&mut self, method: &str, params: Value) -> Value {
        let Page { cdp, record } = self;
        cdp.call(method, params, &mut |method, params| {
            record.event(method, params)
        })
        .unwrap_or_else(|err| panic!("{method}: {err}"))
    }

    /// `Ok(value)`, or `Err(what it threw)`.
    fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let answer = self.cdp(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(details) = answer.get("exceptionDetails") {
            let description = details["exception"]["description"].as_str();
            return Err(description
                .or(details["text"].as_str())
                .unwrap_or("an exception")
                .to_owned());
        }
        Ok(answer["result"]["value"].clone())
    }

    /// One round trip, so that every event sent before it is recorded.
    fn sync(&mut self) {
        self.cdp("Runtime.evaluate", json!({ "expression": "0" }));
    }
}

/// JavaScript's truthiness, for values that came back as JSON.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn lines<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "  (none)".to_owned();
    }
    items
        .iter()
        .map(|item| format!("  {item}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_is_javascripts() {
        for value in [json!(true), json!(1), json!("x"), json!([]), json!({})] {
            assert!(truthy(&value), "{value}");
        }
        for value in [json!(null), json!(false), json!(0), json!("")] {
            assert!(!truthy(&value), "{value}");
        }
    }
}
