//! The value syntax for durations ("2s") and sizes ("512M").
//!
//! Both are strict on purpose: one integer, one unit, nothing else. Every rejection says what
//! would be accepted, computed from the input where possible ("1.5s" → "1500ms").

use std::fmt;
use std::time::Duration;

/// `"20/s burst 40"`: on average `requests` per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub requests: u32,
    /// One second, minute or hour.
    pub per: Duration,
    pub burst: u32,
}

/// Why a duration or size was rejected: `problem` is short enough for a label under the value,
/// `help` says what to write instead.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnitError {
    pub problem: String,
    pub help: Option<String>,
}

impl UnitError {
    pub(crate) fn new(problem: impl Into<String>, help: impl Into<Option<String>>) -> Self {
        UnitError {
            problem: problem.into(),
            help: help.into(),
        }
    }
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)?;
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

/// Duration units and their length in milliseconds, largest first.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Size units and their length in bytes, largest first. Binary (1024-based) throughout.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Parses a duration such as `"500ms"`, `"2s"`, `"5m"`, `"1h"` or `"7d"`: an integer followed by
/// exactly one unit. Zero is accepted here; fields where zero makes no sense reject it.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    duration(input).map_err(|e| e.to_string())
}

/// Parses a size such as `"512M"`: an integer followed by `B`, `K`, `M`, `G` (1024-based) or
/// `KiB`, `MiB`, `GiB`. Returns bytes.
pub fn parse_size(input: &str) -> Result<u64, String> {
    size(input).map_err(|e| e.to_string())
}

/// Parses a percentage such as `"5%"` or `"0.5%"` (0 < p <= 100) into a fraction (0.05).
pub(crate) fn percent(input: &str) -> Result<f64, UnitError> {
    let Some(number) = input.trim().strip_suffix('%') else {
        return Err(UnitError::new(
            "missing `%`",
            format!("write a percentage, e.g. \"{}%\"", input.trim()),
        ));
    };
    match number.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
        Ok(_) => Err(UnitError::new(
            "must be above 0% and at most 100%",
            "e.g. \"5%\"".to_owned(),
        )),
        Err(_) => Err(UnitError::new(
            "not a number",
            "write a percentage, e.g. \"5%\" or \"0.5%\"".to_owned(),
        )),
    }
}

/// `"50%"` of one CPU, up to `"6400%"` (64 CPUs), as a number of CPUs.
pub(crate) fn cpu_share(input: &str) -> Result<f64, UnitError> {
    let Some(number) = input.trim().strip_suffix('%') else {
        return Err(UnitError::new(
            "missing `%`",
            format!(
                "write a share of one CPU, e.g. \"{}%\" (\"200%\" is two CPUs)",
                input.trim()
            ),
        ));
    };
    match number.trim().parse::<f64>() {
        Ok(p) if (1.0..=6400.0).contains(&p) => Ok(p / 100.0),
        Ok(_) => Err(UnitError::new(
            "must be from 1% to 6400%",
            "100% is one CPU, e.g. \"50%\" or \"200%\"".to_owned(),
        )),
        Err(_) => Err(UnitError::new(
            "not a number",
            "write a share of one CPU, e.g. \"50%\"".to_owned(),
        )),
    }
}

pub(crate) fn duration(input: &str) -> Result<Duration, UnitError> {
    let ms = amount(input, Kind::Duration)?;
    Ok(Duration::from_millis(ms))
}

/// `d` in the largest unit that divides it evenly (`"500ms"`, `"26h"`), as berth.toml writes
/// it.
pub(crate) fn format_duration(d: Duration) -> String {
    Kind::Duration.format(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn size(input: &str) -> Result<u64, UnitError> {
    amount(input, Kind::Size)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Duration,
    Size,
}

impl Kind {
    fn units(self) -> &'static [(&'static str, u64)] {
        match self {
            Kind::Duration => DURATION_UNITS,
            Kind::Size => SIZE_UNITS,
        }
    }

    fn example(self) -> &'static str {
        match self {
            Kind::Duration => "2s",
            Kind::Size => "512M",
        }
    }

    fn unit_list(self) -> &'static str {
        match self {
            Kind::Duration => "ms, s, m, h, d",
            Kind::Size => "B, K, M, G (or KiB, MiB, GiB)",
        }
    }

    /// Renders `base` (ms or bytes) in the largest unit that divides it evenly.
    fn format(self, base: u64) -> String {
        let units = match self {
            Kind::Duration => DURATION_UNITS,
            Kind::Size => &[("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)],
        };
        let (unit, len) = units
            .iter()
            .find(|(_, len)| base.is_multiple_of(*len))
            .copied()
            .unwrap_or(("B", 1));
        format!("{}{unit}", base / len)
    }

    /// A unit someone might plausibly write for this kind, mapped to the accepted spelling.
    fn correct_unit(self, unit: &str) -> Option<&'static str> {
        let lower = unit.to_ascii_lowercase();
        match self {
            Kind::Duration => match lower.as_str() {
                "ms" | "msec" | "msecs" | "millis" | "milliseconds" => Some("ms"),
                "s" | "sec" | "secs" | "second" | "seconds" => Some("s"),
                "m" | "min" | "mins" | "minute" | "minutes" => Some("m"),
                "h" | "hr" | "hrs" | "hour" | "hours" => Some("h"),
                "d" | "day" | "days" => Some("d"),
                _ => None,
            },
            Kind::Size => match lower.as_str() {
                "b" | "byte" | "bytes" => Some("B"),
                "k" | "kb" | "kib" => Some("K"),
                "m" | "mb" | "mib" => Some("M"),
                "g" | "gb" | "gib" => Some("G"),
                _ => None,
            },
        }
    }
}

/// One `<digits>[.<digits>]<letters>` piece of the input.
struct Segment<'a> {
    int: &'a str,
    frac: Option<&'a str>,
    unit: &'a str,
}

fn segments(input: &str) -> Option<Vec<Segment<'_>>> {
    let mut rest = input;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                (Some(&after[..len]), &after[len..])
            }
            None => (None, after),
        };
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if int.is_empty() && frac.is_none() || after.len() == rest.len() {
            return None;
        }
        out.push(Segment { int, frac, unit });
        rest = after;
    }
    Some(out)
}

fn amount(input: &str, kind: Kind) -> Result<u64, UnitError> {
    let what = match kind {
        Kind::Duration => "duration",
        Kind::Size => "size",
    };
    let example = kind.example();
    if input.trim().is_empty() {
        return Err(UnitError::new(
            format!("empty {what}"),
            format!("write a number and a unit, e.g. \"{example}\""),
        ));
    }
    if input.contains(char::is_whitespace) {
        let squeezed: String = input.split_whitespace().collect();
        let help = match amount(&squeezed, kind) {
            Ok(_) => Some(format!("write \"{squeezed}\"")),
            Err(e) => e.help,
        };
        return Err(UnitError::new("spaces are not allowed", help));
    }
    if input.starts_with('-') {
        return Err(UnitError::new(format!("a {what} cannot be negative"), None));
    }
    let Some(segments) = segments(input) else {
        return Err(UnitError::new(
            format!("not a {what}"),
            format!(
                "write a whole number and one unit ({}), e.g. \"{example}\"",
                kind.unit_list()
            ),
        ));
    };

    // Resolve each segment to (integer, fraction, unit length) or explain the first bad one.
    let mut parts = Vec::with_capacity(segments.len());
    for seg in &segments {
        if seg.int.is_empty() {
            return Err(UnitError::new(
                format!("a {what} starts with a number"),
                format!("e.g. \"{example}\""),
            ));
        }
        let number = format!(
            "{}{}",
            seg.int,
            seg.frac.map(|f| format!(".{f}")).unwrap_or_default()
        );
        if seg.unit.is_empty() {
            let suggest = match kind {
                Kind::Duration => format!("add a unit, e.g. \"{number}s\""),
                Kind::Size => format!("add a unit, e.g. \"{number}M\", or \"{number}B\" for bytes"),
            };
            let problem = if segments.len() == 1 {
                "missing a unit".to_owned()
            } else {
                format!("missing a unit after `{number}`")
            };
            return Err(UnitError::new(problem, suggest));
        }
        let Some(&(_, len)) = kind.units().iter().find(|(u, _)| *u == seg.unit) else {
            let help = match kind.correct_unit(seg.unit) {
                Some(unit) => format!("write \"{number}{unit}\""),
                None if seg.unit == "us" || seg.unit == "ns" => {
                    "the smallest unit is ms".to_owned()
                }
                None => format!("use one of {}", kind.unit_list()),
            };
            return Err(UnitError::new(format!("unknown unit `{}`", seg.unit), help));
        };
        parts.push((seg.int, seg.frac, len));
    }

    let too_large = || UnitError::new(format!("{what} is too large"), None);
    let mut total: u64 = 0;
    for &(int, frac, len) in &parts {
        let int: u64 = int.parse().map_err(|_| too_large())?;
        let mut value = int.checked_mul(len).ok_or_else(too_large)?;
        if let Some(frac) = frac {
            // Exact only when the fraction lands on a whole base unit; otherwise say so.
            let digits = u32::try_from(frac.len()).map_err(|_| too_large())?;
            let scale = 10u64.checked_pow(digits).ok_or_else(too_large)?;
            let frac: u64 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| too_large())?
            };
            let scaled = frac.checked_mul(len).ok_or_else(too_large)?;
            if !scaled.is_multiple_of(scale) {
                return Err(UnitError::new(
                    "fractions are not allowed",
                    "use a whole number of a smaller unit".to_owned(),
                ));
            }
            value = value.checked_add(scaled / scale).ok_or_else(too_large)?;
        }
        total = total.checked_add(value).ok_or_else(too_large)?;
    }

    if parts.iter().any(|(_, frac, _)| frac.is_some()) {
        return Err(UnitError::new(
            "fractions are not allowed",
            format!("write \"{}\"", kind.format(total)),
        ));
    }
    if parts.len() > 1 {
        return Err(UnitError::new(
            "use a single unit",
            format!("write \"{}\"", kind.format(total)),
        ));
    }
    Ok(total)
}

/// The accepted form of a rate, for help texts.
const RATE_FORM: &str = "the form is \"REQUESTS/s|m|h [burst N]\", e.g. \"20/s burst 40\"";

/// Parses a rate such as `"20/s"`, `"5/m burst 10"` or `"1000/h"`: requests per second,
/// minute or hour, and optionally how many may come at once (default: the per-unit number).
pub fn parse_rate(input: &str) -> Result<RateSpec, String> {
    rate(input).map_err(|e| e.to_string())
}

pub(crate) fn rate(input: &str) -> Result<RateSpec, UnitError> {
    let form = || Some(RATE_FORM.to_owned());
    let mut words = input.split_whitespace();
    let Some(first) = words.next() else {
        return Err(UnitError::new("empty rate", form()));
    };
    let Some((n, unit)) = first.split_once('/') else {
        let help = if first.parse::<u32>().is_ok() {
            Some(format!("per what? write \"{first}/s\" (or /m, /h)"))
        } else {
            form()
        };
        return Err(UnitError::new("expected REQUESTS/UNIT", help));
    };
    let requests = count(n, "requests")?;
    let per = match unit {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            let help = match Kind::Duration.correct_unit(other) {
                Some(u @ ("s" | "m" | "h")) => Some(format!("write \"{n}/{u}\"")),
                _ => Some("a rate is per second (s), minute (m) or hour (h)".to_owned()),
            };
            return Err(UnitError::new(format!("unknown unit `{other}`"), help));
        }
    };
    let burst = match (words.next(), words.next()) {
        (None, _) => requests,
        (Some("burst"), Some(m)) => count(m, "burst")?,
        (Some("burst"), None) => {
            return Err(UnitError::new(
                "`burst` without a number",
                Some(format!("write \"{first} burst {requests}\"")),
            ));
        }
        (Some(other), _) => {
            return Err(UnitError::new(format!("unexpected `{other}`"), form()));
        }
    };
    if let Some(extra) = words.next() {
        return Err(UnitError::new(format!("unexpected `{extra}`"), form()));
    }
    Ok(RateSpec {
        requests,
        per,
        burst,
    })
}

/// A whole number from 1 to 1 000 000 000 (`what`: "requests", "burst").
fn count(text: &str, what: &str) -> Result<u32, UnitError> {
    match text.parse::<u32>() {
        Ok(0) => Err(UnitError::new(
            format!("{what} must be at least 1"),
            Some(RATE_FORM.to_owned()),
        )),
        Ok(n) if n <= 1_000_000_000 => Ok(n),
        _ => Err(UnitError::new(
            format!("`{text}` is not a whole number from 1 to 1000000000"),
            Some(RATE_FORM.to_owned()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is either the parsed value in base units (ms or bytes) or the error text.
    fn check(kind: Kind, input: &str, expected: Result<u64, &str>) {
        let got = match kind {
            Kind::Duration => parse_duration(input).map(|d| u64::try_from(d.as_millis()).unwrap()),
            Kind::Size => parse_size(input),
        };
        assert_eq!(got, expected.map_err(str::to_owned), "input {input:?}");
    }

    #[test]
    fn durations() {
        let d = |input, expected| check(Kind::Duration, input, expected);
        d("500ms", Ok(500));
        d("2s", Ok(2_000));
        d("5m", Ok(300_000));
        d("1h", Ok(3_600_000));
        d("7d", Ok(604_800_000));
        d("0s", Ok(0));
        d("007s", Ok(7_000));
        d("2", Err("missing a unit; add a unit, e.g. \"2s\""));
        d("30", Err("missing a unit; add a unit, e.g. \"30s\""));
        d(
            "",
            Err("empty duration; write a number and a unit, e.g. \"2s\""),
        );
        d("2 s", Err("spaces are not allowed; write \"2s\""));
        d(" 2s", Err("spaces are not allowed; write \"2s\""));
        d("1.5s", Err("fractions are not allowed; write \"1500ms\""));
        d("0.5m", Err("fractions are not allowed; write \"30s\""));
        d(
            "1.0005s",
            Err("fractions are not allowed; use a whole number of a smaller unit"),
        );
        d("1h30m", Err("use a single unit; write \"90m\""));
        d(
            "1h30",
            Err("missing a unit after `30`; add a unit, e.g. \"30s\""),
        );
        d("2sec", Err("unknown unit `sec`; write \"2s\""));
        d("2S", Err("unknown unit `S`; write \"2s\""));
        d("10 minutes", Err("spaces are not allowed; write \"10m\""));
        d("5us", Err("unknown unit `us`; the smallest unit is ms"));
        d("5w", Err("unknown unit `w`; use one of ms, s, m, h, d"));
        d("-1s", Err("a duration cannot be negative"));
        d(".5s", Err("a duration starts with a number; e.g. \"2s\""));
        d(
            "s",
            Err("not a duration; write a whole number and one unit (ms, s, m, h, d), e.g. \"2s\""),
        );
        d(
            "+1s",
            Err("not a duration; write a whole number and one unit (ms, s, m, h, d), e.g. \"2s\""),
        );
        d(
            "1s!",
            Err("not a duration; write a whole number and one unit (ms, s, m, h, d), e.g. \"2s\""),
        );
        d("99999999999999999999d", Err("duration is too large"));
        d("999999999999999d", Err("duration is too large"));
    }

    #[test]
    fn sizes() {
        let s = |input, expected| check(Kind::Size, input, expected);
        s("512M", Ok(512 << 20));
        s("64K", Ok(64 << 10));
        s("1G", Ok(1 << 30));
        s("10MiB", Ok(10 << 20));
        s("3KiB", Ok(3 << 10));
        s("2GiB", Ok(2 << 30));
        s("100B", Ok(100));
        s("0B", Ok(0));
        s(
            "1024",
            Err("missing a unit; add a unit, e.g. \"1024M\", or \"1024B\" for bytes"),
        );
        s("512MB", Err("unknown unit `MB`; write \"512M\""));
        s("512m", Err("unknown unit `m`; write \"512M\""));
        s("1.5G", Err("fractions are not allowed; write \"1536M\""));
        s(
            "1T",
            Err("unknown unit `T`; use one of B, K, M, G (or KiB, MiB, GiB)"),
        );
        s("1G512M", Err("use a single unit; write \"1536M\""));
        s("512 M", Err("spaces are not allowed; write \"512M\""));
        s("99999999999G", Err("size is too large"));
    }

    #[test]
    fn rates() {
        let ok = |input: &str, requests: u32, secs: u64, burst: u32| {
            let expected = RateSpec {
                requests,
                per: Duration::from_secs(secs),
                burst,
            };
            assert_eq!(rate(input), Ok(expected), "{input}");
        };
        ok("20/s", 20, 1, 20);
        ok("20/s burst 40", 20, 1, 40);
        ok("5/m  burst 5", 5, 60, 5);
        ok("1000/h burst 1", 1000, 3600, 1);
        let err = |input: &str, problem: &str, help: Option<&str>| {
            let e = rate(input).unwrap_err();
            assert_eq!(e.problem, problem, "{input}");
            if let Some(help) = help {
                assert_eq!(e.help.as_deref(), Some(help), "{input}");
            }
        };
        err("", "empty rate", None);
        err(
            "20",
            "expected REQUESTS/UNIT",
            Some("per what? write \"20/s\" (or /m, /h)"),
        );
        err("20/sec", "unknown unit `sec`", Some("write \"20/s\""));
        err("20/d", "unknown unit `d`", None);
        err("0/s", "requests must be at least 1", None);
        err(
            "x/s",
            "`x` is not a whole number from 1 to 1000000000",
            None,
        );
        err(
            "20/s burst",
            "`burst` without a number",
            Some("write \"20/s burst 20\""),
        );
        err("20/s burst 0", "burst must be at least 1", None);
        err("20/s bust 40", "unexpected `bust`", None);
        err("20/s burst 40 now", "unexpected `now`", None);
    }
}
