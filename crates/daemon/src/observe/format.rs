//! Alert values as an operator reads them: `1.20s`, `3.2%`, `4`, `6d 2h`.

/// `value` of the alert `name`, in its unit.
pub(crate) fn shown(name: &str, value: f64) -> String {
    if value.is_nan() {
        return "-".to_owned();
    }
    match name {
        "p95_latency" => latency(value),
        "error_rate" | "memory" | "disk_free" => format!("{:.1}%", value * 100.0),
        "restarts" => format!("{value:.0}"),
        "cert_expiry" | "backup_age" | "instance_down" => duration(value),
        "daemon_memory" => format!("{:.0} MiB", value / 1048576.0),
        _ => format!("{value}"),
    }
}

fn latency(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0}ms", secs * 1000.0)
    } else {
        format!("{secs:.2}s")
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn units() {
        assert_eq!(shown("p95_latency", 0.5), "500ms");
        assert_eq!(shown("p95_latency", 1.234), "1.23s");
        assert_eq!(shown("error_rate", 0.032), "3.2%");
        assert_eq!(shown("cert_expiry", 6.0 * 86_400.0 + 7200.0), "6d 2h");
        assert_eq!(shown("backup_age", 26.0 * 3600.0), "26h");
        assert_eq!(shown("restarts", 4.0), "4");
    }
}
