//! The `schedule` of a backup: five cron fields (minute hour day-of-month month day-of-week)
//! or `@hourly`, `@daily`, `@weekly`, `@monthly`.
//!
//! The daemon schedules with the `croner` crate. This module accepts a subset of what croner
//! accepts (numbers, three-letter month and day names, `*`, ranges `a-b`, steps `*/n` and
//! `a-b/n`, lists `a,b`; no seconds field, no `L`, `W`, `#` or `?`) and says which field is
//! wrong and why; a schedule that passes is then parsed by croner as well, so the daemon never
//! meets one it cannot read.

use std::ops::Range;

use crate::walk::{backticked, did_you_mean};

/// What is wrong with a schedule: `range` (bytes of the schedule text) is the part to point
/// at, `label` what is wrong there, `help` what to write instead.
#[derive(Debug, PartialEq)]
pub(crate) struct ScheduleError {
    pub range: Range<usize>,
    pub label: String,
    pub help: String,
}

/// The shorthands berth takes, as croner reads them (midnight; Sunday; the 1st).
const NICKNAMES: &[&str] = &["@hourly", "@daily", "@weekly", "@monthly"];

const FORMAT: &str = "five fields: minute hour day-of-month month day-of-week, e.g. \
                      \"0 2 * * *\" for 02:00 every day; or @hourly, @daily, @weekly, @monthly";
const SYNTAX: &str = "each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, \
                      or a list of those `a,b`";

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Three-letter names, the first one standing for `first_name`.
    names: &'static [&'static str],
    first_name: u32,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field::numeric("minute", 0, 59),
    Field::numeric("hour", 0, 23),
    Field::numeric("day-of-month", 1, 31),
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        first_name: 1,
    },
    // 0 and 7 are both Sunday, as in croner and Vixie cron.
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: DAYS,
        first_name: 0,
    },
];

impl Field {
    const fn numeric(name: &'static str, min: u32, max: u32) -> Field {
        Field {
            name,
            min,
            max,
            names: &[],
            first_name: 0,
        }
    }
}

/// Checks a `schedule`; see the module doc for what is accepted.
pub(crate) fn check_schedule(text: &str) -> Result<(), ScheduleError> {
    let whole = |label: String, help: &str| ScheduleError {
        range: 0..text.len(),
        label,
        help: help.to_owned(),
    };
    let trimmed = text.trim();
    if let Some(nickname) = trimmed.strip_prefix('@') {
        if NICKNAMES.contains(&trimmed) {
            return confirm(text);
        }
        let label = match did_you_mean(trimmed, NICKNAMES.iter().copied()) {
            Some(close) if !matches!(nickname, "yearly" | "annually") => {
                format!("unknown shorthand `{trimmed}`, did you mean `{close}`?")
            }
            _ => format!("unknown shorthand `{trimmed}`"),
        };
        let help = format!(
            "use {}, or five cron fields such as \"0 3 1 1 *\" (03:00 on January 1st)",
            backticked(NICKNAMES.iter().copied())
        );
        return Err(whole(label, &help));
    }
    let fields = split_fields(text);
    match fields.len() {
        5 => {}
        0 => return Err(whole("the schedule is empty".to_owned(), FORMAT)),
        6 => {
            return Err(whole(
                "6 fields: cron here has 5, without seconds".to_owned(),
                FORMAT,
            ));
        }
        n => return Err(whole(format!("{n} fields, cron has 5"), FORMAT)),
    }
    let mut sets = Vec::with_capacity(5);
    for (i, ((field_text, start), field)) in fields.iter().zip(&FIELDS).enumerate() {
        let set = check_field(field_text, field).map_err(|(range, problem, help)| {
            let range = start + range.start..start + range.end;
            let label = format!("cron field {} ({}) {problem}", i + 1, field.name);
            ScheduleError {
                range,
                label,
                help: help.unwrap_or_else(|| FORMAT.to_owned()),
            }
        })?;
        sets.push(set);
    }
    // A day of the month no chosen month has never comes (unless the day of the week, which
    // cron ORs with it, is restricted too).
    let (day_text, day_start) = fields[2];
    if fields[4].0 == "*" && day_text != "*" {
        let first_day = (1..=31).find(|d| sets[2][*d]).unwrap_or(1);
        let months: Vec<usize> = (1..=12).filter(|m| sets[3][*m]).collect();
        if months.iter().all(|m| days_in_month(*m) < first_day) {
            return Err(ScheduleError {
                range: day_start..day_start + day_text.len(),
                label: format!(
                    "cron field 3 (day-of-month): the schedule never runs, no chosen month has a day {first_day}"
                ),
                help: "pick a day each chosen month has (February has at most 29)".to_owned(),
            });
        }
    }
    confirm(text)
}

/// Asks croner, which the daemon schedules with, to read `text` too.
fn confirm(text: &str) -> Result<(), ScheduleError> {
    match croner::parser::CronParser::new().parse(text) {
        Ok(_) => Ok(()),
        Err(e) => Err(ScheduleError {
            range: 0..text.len(),
            label: format!("not understood by the scheduler: {e}"),
            help: FORMAT.to_owned(),
        }),
    }
}

/// The whitespace-separated fields of `text`, with their byte offsets.
fn split_fields(text: &str) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((&text[s..i], s));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// What is wrong in a field: the bytes of the field, the problem, a help if more specific than
/// the syntax.
type FieldError = (Range<usize>, String, Option<String>);

/// Which values a field selects, indexed by value (minutes, the widest field, go to 59).
type Values = [bool; 60];

/// The values a field selects, or what is wrong with it.
fn check_field(text: &str, field: &Field) -> Result<Values, FieldError> {
    let mut set = [false; 60];
    if text == "*" {
        set[field.min as usize..=field.max as usize].fill(true);
        return Ok(set);
    }
    let mut offset = 0;
    for item in text.split(',') {
        let range = offset..offset + item.len();
        offset += item.len() + 1;
        let err = |problem: String, help: Option<String>| (range.clone(), problem, help);
        if item.is_empty() {
            return Err(err(
                "has an empty list entry".to_owned(),
                Some(SYNTAX.to_owned()),
            ));
        }
        if item == "*" {
            return Err(err(
                "`*` cannot be part of a list".to_owned(),
                Some("`*` alone already selects every value".to_owned()),
            ));
        }
        if let Some(c) = item.chars().find(|c| matches!(c, 'L' | 'W' | '#' | '?')) {
            return Err(err(
                format!("`{item}`: `{c}` is not supported"),
                Some(SYNTAX.to_owned()),
            ));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let (first, last) = match (base, base.split_once('-')) {
            ("*", _) if step.is_some() => (field.min, field.max),
            (_, Some((a, b))) => {
                if a.is_empty() || b.is_empty() {
                    let side = if a.is_empty() { "start" } else { "end" };
                    return Err(err(
                        format!("range `{base}` is missing its {side}"),
                        Some(SYNTAX.to_owned()),
                    ));
                }
                let a = value(a, field, false).map_err(|(p, h)| err(p, h))?;
                let b = value(b, field, true).map_err(|(p, h)| err(p, h))?;
                if a > b {
                    return Err(err(
                        format!("range `{base}` goes backwards"),
                        Some(format!(
                            "write the smaller value first; for a range across the end of the {}, use a list, e.g. `22-23,0-2`",
                            period(field)
                        )),
                    ));
                }
                (a, b)
            }
            (_, None) if step.is_some() => {
                let to = format!("{base}-{}/{}", field.max, step.unwrap_or_default());
                return Err(err(
                    format!("`{item}`: a step needs `*` or a range before the `/`"),
                    Some(format!("write `{to}` (from {base} on), or `*/N`")),
                ));
            }
            (_, None) => {
                let v = value(base, field, false).map_err(|(p, h)| err(p, h))?;
                (v, v)
            }
        };
        let step = match step {
            None => 1,
            Some(s) if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) => {
                return Err(err(
                    format!("step `{s}` is not a number"),
                    Some(SYNTAX.to_owned()),
                ));
            }
            Some(s) => match number(s) {
                Some(n) if (1..=field.max).contains(&n) => n,
                _ => {
                    return Err(err(
                        format!("step `{s}` is out of range 1-{}", field.max),
                        None,
                    ));
                }
            },
        };
        for v in (first..=last).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    // Both 0 and 7 are Sunday.
    if field.max == 7 && set[7] {
        set[0] = true;
    }
    Ok(set)
}

/// One value of a field: a number in range, or a name where the field has names. `range_end`:
/// the end of a range, where `sun` is 7 (so `fri-sun` runs forwards).
fn value(text: &str, field: &Field, range_end: bool) -> Result<u32, (String, Option<String>)> {
    let out_of_range = || {
        let sunday = if field.max == 7 {
            " (0 and 7 are Sunday)"
        } else {
            ""
        };
        format!(
            "`{text}` is out of range {}-{}{sunday}",
            field.min, field.max
        )
    };
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return match number(text) {
            Some(n) if (field.min..=field.max).contains(&n) => Ok(n),
            _ => Err((out_of_range(), None)),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        let v = i as u32 + field.first_name;
        return Ok(if range_end && field.max == 7 && v == 0 {
            7
        } else {
            v
        });
    }
    if field.names.is_empty() {
        return Err((format!("`{text}` is not a number"), Some(SYNTAX.to_owned())));
    }
    let kind = if field.max == 7 { "day" } else { "month" };
    let names = || field.names.iter().copied();
    let problem = format!("`{text}` is not a number or a {kind} name");
    let help = match (lower.get(..3), did_you_mean(&lower, names())) {
        (Some(short), _) if lower.len() > 3 && field.names.contains(&short) => {
            format!("use the three-letter name `{short}`")
        }
        (_, Some(close)) => format!("did you mean `{close}`?"),
        _ => format!(
            "a number {}-{} or one of {}",
            field.min,
            field.max,
            backticked(names())
        ),
    };
    Err((problem, Some(help)))
}

fn number(text: &str) -> Option<u32> {
    text.parse().ok()
}

/// "hour" for minutes, "day" for hours...: what a range of the field wraps around.
fn period(field: &Field) -> &'static str {
    match field.name {
        "minute" => "hour",
        "hour" => "day",
        "day-of-month" => "month",
        "month" => "year",
        _ => "week",
    }
}

/// Days of a month at most (February in a leap year).
fn days_in_month(month: usize) -> usize {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected`: `Ok` or the label, with the text the error points at.
    fn check(schedule: &str, expected: Result<(), (&str, &str)>) {
        let actual = check_schedule(schedule)
            .map_err(|e| (schedule[e.range.clone()].to_owned(), e.label.clone()));
        let expected = expected.map_err(|(at, label)| (at.to_owned(), label.to_owned()));
        assert_eq!(actual, expected, "{schedule:?}");
    }

    #[test]
    fn accepted_schedules_are_accepted_by_croner_too() {
        for ok in [
            "0 2 * * *",
            "*/15 * * * *",
            "0 */6 * * *",
            "30 4 1,15 * *",
            "0 9-17/2 * * mon-fri",
            "0 0 * * MON",
            "0 0 * * fri-sun",
            "0 0 * * sat,sun",
            "0 0 1 jan-mar,oct *",
            "0 0 29 2 *",
            "0 0 31 * *",
            "0 0 * * 7",
            "0 0 * * 0-7",
            "59 23 31 12 6",
            "05 01 * * *",
            "0\t2  * * *",
            " 0 2 * * * ",
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
        ] {
            check(ok, Ok(()));
        }
    }

    #[test]
    fn fields_out_of_range() {
        check(
            "0 25 * * *",
            Err(("25", "cron field 2 (hour) `25` is out of range 0-23")),
        );
        check(
            "60 * * * *",
            Err(("60", "cron field 1 (minute) `60` is out of range 0-59")),
        );
        check(
            "0 0 0 * *",
            Err(("0", "cron field 3 (day-of-month) `0` is out of range 1-31")),
        );
        check(
            "0 0 1 13 *",
            Err(("13", "cron field 4 (month) `13` is out of range 1-12")),
        );
        check(
            "0 0 * * 8",
            Err((
                "8",
                "cron field 5 (day-of-week) `8` is out of range 0-7 (0 and 7 are Sunday)",
            )),
        );
        check(
            "0 1,2,99 * * *",
            Err(("99", "cron field 2 (hour) `99` is out of range 0-23")),
        );
        check(
            "0 0-24 * * *",
            Err(("0-24", "cron field 2 (hour) `24` is out of range 0-23")),
        );
        check(
            "99999999999 * * * *",
            Err((
                "99999999999",
                "cron field 1 (minute) `99999999999` is out of range 0-59",
            )),
        );
    }

    #[test]
    fn field_syntax() {
        check(
            "*/0 * * * *",
            Err(("*/0", "cron field 1 (minute) step `0` is out of range 1-59")),
        );
        check(
            "*/x * * * *",
            Err(("*/x", "cron field 1 (minute) step `x` is not a number")),
        );
        check(
            "5/10 * * * *",
            Err((
                "5/10",
                "cron field 1 (minute) `5/10`: a step needs `*` or a range before the `/`",
            )),
        );
        check(
            "0 5-2 * * *",
            Err(("5-2", "cron field 2 (hour) range `5-2` goes backwards")),
        );
        check(
            "0 1,,2 * * *",
            Err(("", "cron field 2 (hour) has an empty list entry")),
        );
        check(
            "0 *,1 * * *",
            Err(("*", "cron field 2 (hour) `*` cannot be part of a list")),
        );
        check(
            "0 0 L * *",
            Err(("L", "cron field 3 (day-of-month) `L`: `L` is not supported")),
        );
        check(
            "0 0 ? * *",
            Err(("?", "cron field 3 (day-of-month) `?`: `?` is not supported")),
        );
        check(
            "0 0 * * 5#2",
            Err((
                "5#2",
                "cron field 5 (day-of-week) `5#2`: `#` is not supported",
            )),
        );
        check(
            "0 0 1- * *",
            Err((
                "1-",
                "cron field 3 (day-of-month) range `1-` is missing its end",
            )),
        );
    }

    #[test]
    fn names() {
        check(
            "mon 0 * * *",
            Err(("mon", "cron field 1 (minute) `mon` is not a number")),
        );
        check(
            "0 0 * * jan",
            Err((
                "jan",
                "cron field 5 (day-of-week) `jan` is not a number or a day name",
            )),
        );
        check(
            "0 0 * * monday",
            Err((
                "monday",
                "cron field 5 (day-of-week) `monday` is not a number or a day name",
            )),
        );
        let e = check_schedule("0 0 * * monday").unwrap_err();
        assert_eq!(e.help, "use the three-letter name `mon`");
        let e = check_schedule("0 0 1 jna *").unwrap_err();
        assert_eq!(e.help, "did you mean `jan`?");
    }

    #[test]
    fn field_counts_and_shorthands() {
        check(
            "0 0 2 * * *",
            Err(("0 0 2 * * *", "6 fields: cron here has 5, without seconds")),
        );
        check("0 2 * *", Err(("0 2 * *", "4 fields, cron has 5")));
        check("  ", Err(("  ", "the schedule is empty")));
        check(
            "@dayly",
            Err((
                "@dayly",
                "unknown shorthand `@dayly`, did you mean `@daily`?",
            )),
        );
        check("@yearly", Err(("@yearly", "unknown shorthand `@yearly`")));
        check(
            "@midnight",
            Err(("@midnight", "unknown shorthand `@midnight`")),
        );
    }

    #[test]
    fn days_that_never_come() {
        check(
            "0 0 30 2 *",
            Err((
                "30",
                "cron field 3 (day-of-month): the schedule never runs, no chosen month has a day 30",
            )),
        );
        check(
            "0 0 31 4,6 *",
            Err((
                "31",
                "cron field 3 (day-of-month): the schedule never runs, no chosen month has a day 31",
            )),
        );
        // Cron ORs day of month and day of week when both are restricted: this one runs on
        // Mondays.
        check("0 0 30 2 mon", Ok(()));
        check("0 0 31 4,5 *", Ok(()));
    }
}
