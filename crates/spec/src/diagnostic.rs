//! Problems found in a berth.toml, and their rustc-like rendering.
//!
//! ```text
//! error: unknown key `comand` in [services.web]
//!  --> examples/hello/berth.toml:7:1
//!   |
//! 7 | comand = "target/release/hello"
//!   | ^^^^^^ did you mean `command`?
//! ```

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Level, Origin, Renderer, Snippet};

/// Source lines longer than this are cut around the caret.
const TERM_WIDTH: usize = 1 << 16;

/// One problem: what is wrong (`message`), where (`span`, byte offsets into the source), a short
/// `label` printed under the offending text, and what would be right (`help`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Range<usize>>,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem with no position yet; add one with [`Diagnostic::at`].
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            span: None,
            label: String::new(),
            help: None,
        }
    }

    pub fn at(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.span = Some(span);
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// All problems found in one file, with the file's name and text so they can be rendered on
/// their own. Never empty when returned by [`crate::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    file: String,
    source: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty list for `file`. Callers doing IO-backed checks (does the static dir exist?) can
    /// push their own problems and render them the same way.
    pub fn new(file: &str, source: &str) -> Self {
        Diagnostics {
            file: file.to_owned(),
            source: source.to_owned(),
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    /// 1-based line and column (in characters) of a byte offset into the source.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.source, offset);
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().filter(|c| *c != '\r').count() + 1;
        (line, col)
    }

    /// Orders problems by position, those without one first.
    pub(crate) fn sort(&mut self) {
        self.items
            .sort_by_key(|d| d.span.as_ref().map(|s| (s.start, s.end)));
    }

    /// One problem, rendered like rustc's errors by annotate-snippets: carets are placed by
    /// display width, so they stay under wide characters (CJK, emoji) and tabs.
    fn render(&self, d: &Diagnostic) -> String {
        let title = Level::ERROR.primary_title(d.message.as_str());
        let group = match &d.span {
            None => title.element(Origin::path(self.file.as_str())),
            Some(span) => {
                let span = self.first_line_of(span);
                let annotation = AnnotationKind::Primary.span(span);
                let annotation = if d.label.is_empty() {
                    annotation
                } else {
                    annotation.label(d.label.as_str())
                };
                title.element(
                    Snippet::source(self.source.as_str())
                        .path(self.file.as_str())
                        .annotation(annotation),
                )
            }
        };
        let group = match &d.help {
            Some(help) => group.element(Level::HELP.message(help.as_str())),
            None => group,
        };
        Renderer::plain().term_width(TERM_WIDTH).render(&[group])
    }

    /// `span` cut to the line it starts on (only that line is shown), on char boundaries and
    /// inside the source.
    fn first_line_of(&self, span: &Range<usize>) -> Range<usize> {
        let src = &self.source;
        let start = floor_char_boundary(src, span.start);
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = src[line_start..].split('\n').next().unwrap_or("");
        let line_end = line_start + line.trim_end_matches('\r').len();
        let start = start.min(line_end);
        let end = floor_char_boundary(src, span.end.clamp(start, line_end));
        start..end
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{}\n", self.render(d))?;
        }
        let n = self.items.len();
        let problems = if n == 1 { "problem" } else { "problems" };
        write!(f, "error: {} has {n} {problems}", self.file)
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, span: Range<usize>, expected: &str) {
        let mut diags = Diagnostics::new("t.toml", source);
        diags.push(Diagnostic::error("msg").at(span, "label").help("do this"));
        assert_eq!(diags.to_string(), expected);
    }

    #[test]
    fn renders_tabs_wide_characters_and_line_ends() {
        check(
            "a = 1\n\tkey = \"é\"\n",
            13..17,
            "error: msg\n --> t.toml:2:8\n  |\n2 |     key = \"é\"\n  |           ^^^ label\n  |\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        // Empty span at the end of a line, and a span running past the line end.
        check(
            "a = \"x\r\nb = 2",
            7..7,
            "error: msg\n --> t.toml:1:7\n  |\n1 | a = \"x\n  |       ^ label\n  |\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        check(
            "ab\ncd",
            1..5,
            "error: msg\n --> t.toml:1:2\n  |\n1 | ab\n  |  ^ label\n  |\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        // Wide characters take two columns: the caret goes by display width.
        check(
            "k = \"日本\", x",
            14..15,
            "error: msg\n --> t.toml:1:11\n  |\n1 | k = \"日本\", x\n  |             ^ label\n  |\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        check(
            "ab",
            10..12,
            "error: msg\n --> t.toml:1:3\n  |\n1 | ab\n  |   ^ label\n  |\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
    }
}
