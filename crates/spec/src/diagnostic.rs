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

    fn render(&self, f: &mut fmt::Formatter<'_>, d: &Diagnostic) -> fmt::Result {
        writeln!(f, "error: {}", d.message)?;
        let Some(span) = &d.span else {
            writeln!(f, " --> {}", self.file)?;
            if let Some(help) = &d.help {
                writeln!(f, "  = help: {help}")?;
            }
            return Ok(());
        };
        let (line, col) = self.line_col(span.start);
        let width = line.to_string().len();
        let pad = " ".repeat(width);
        writeln!(f, "{pad}--> {}:{line}:{col}", self.file)?;
        writeln!(f, "{pad} |")?;

        // Show the first line of the span; tabs become 4 spaces so the carets line up.
        let start = floor_char_boundary(&self.source, span.start);
        let line_start = self.source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.source[start..]
            .find('\n')
            .map_or(self.source.len(), |i| start + i);
        let end = floor_char_boundary(&self.source, span.end.clamp(start, line_end));
        let text = self.source[line_start..line_end].trim_end_matches('\r');
        let before = display_width(&self.source[line_start..start]);
        let under = display_width(&self.source[start..end]).max(1);
        writeln!(f, "{line:>width$} | {}", text.replace('\t', "    "))?;
        let carets = format!("{}{}", " ".repeat(before), "^".repeat(under));
        if d.label.is_empty() {
            writeln!(f, "{pad} | {carets}")?;
        } else {
            writeln!(f, "{pad} | {carets} {}", d.label)?;
        }
        if let Some(help) = &d.help {
            writeln!(f, "{pad} = help: {help}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            self.render(f, d)?;
            writeln!(f)?;
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

fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '\t' => 4,
            '\r' => 0,
            _ => 1,
        })
        .sum()
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
    fn renders_tabs_unicode_and_line_ends() {
        check(
            "a = 1\n\tkey = \"é\"\n",
            13..17,
            "error: msg\n --> t.toml:2:8\n  |\n2 |     key = \"é\"\n  |           ^^^ label\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        // Empty span at the end of a line, and a span running past the line end.
        check(
            "a = \"x\r\nb = 2",
            7..7,
            "error: msg\n --> t.toml:1:7\n  |\n1 | a = \"x\n  |       ^ label\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        check(
            "ab\ncd",
            1..5,
            "error: msg\n --> t.toml:1:2\n  |\n1 | ab\n  |  ^ label\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
        check(
            "ab",
            10..12,
            "error: msg\n --> t.toml:1:3\n  |\n1 | ab\n  |   ^ label\n  = help: do this\n\nerror: t.toml has 1 problem",
        );
    }
}
