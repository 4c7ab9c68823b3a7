//! When backups run: a cron expression (5 fields, or `@hourly`, `@daily`, `@weekly`,
//! `@monthly`) in the server's local time.

use std::str::FromStr;
use std::time::SystemTime;

use chrono::{DateTime, Local};
use croner::Cron;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

impl Schedule {
    /// berth check has already vetted the text; an error here names the expression.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && fields != 5 {
            return Err(format!("schedule `{text}`: a cron expression has 5 fields"));
        }
        let cron = Cron::from_str(text).map_err(|e| format!("schedule `{text}`: {e}"))?;
        Ok(Schedule {
            cron,
            text: text.to_owned(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `t` that the schedule fires.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let local: DateTime<Local> = t.into();
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(SystemTime::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_after_is_strictly_later_and_on_the_schedule() {
        let hourly = Schedule::parse("@hourly").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let next = hourly.next_after(t).unwrap();
        let gap = next.duration_since(t).unwrap();
        assert!(
            gap > Duration::ZERO && gap <= Duration::from_secs(3600),
            "{gap:?}"
        );
        let after = hourly.next_after(next).unwrap();
        assert_eq!(
            after.duration_since(next).unwrap(),
            Duration::from_secs(3600)
        );

        let every_5 = Schedule::parse("*/5 * * * *").unwrap();
        let n = every_5.next_after(t).unwrap();
        let secs = n.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs % 300, 0);

        assert!(Schedule::parse("0 2 * *").is_err());
        assert!(Schedule::parse("0 0 2 * * *").is_err(), "no seconds field");
        assert!(Schedule::parse("0 25 * * *").is_err());
    }
}
