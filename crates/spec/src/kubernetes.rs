//! The keys of a service that only `berth export kubernetes` reads: `image = "..."` and
//! `autoscale = { min = 2, max = 10, cpu = "70%" }`. The single-server daemon ignores both;
//! `berth check` validates them like every other key.

use crate::diagnostic::Diagnostic;
use crate::walk::{Problem, Table, Walker, optional};

const AUTOSCALE_KEYS: &[&str] = &["min", "max", "cpu"];

/// `autoscale = { min = 2, max = 10, cpu = "70%" }`: a HorizontalPodAutoscaler in the
/// Kubernetes export; nothing on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoscale {
    /// Fewest replicas, at least 1.
    pub min: u32,
    /// Most replicas, at least `min`, at most [`Autoscale::MAX_REPLICAS`].
    pub max: u32,
    /// Target average CPU use, in percent of the CPU each replica requests (its `cpu_max`);
    /// 1 to 100. Default [`Autoscale::DEFAULT_CPU`].
    pub cpu_percent: u32,
}

impl Autoscale {
    pub const DEFAULT_CPU: u32 = 80;
    pub const MAX_REPLICAS: u32 = 1000;
}

/// `image = "registry.example.com/shop/web:1.4"`: an OCI image reference, checked for the
/// shape only (no registry is asked).
pub(crate) fn check_image(image: &str) -> Result<(), Problem> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            "not an image reference".to_owned(),
            Some("write e.g. image = \"ghcr.io/acme/shop-web:1.4.2\"".to_owned()),
        ));
    }
    // The repository part (before a tag or digest) is lowercase by the OCI rules.
    let repository = image.split('@').next().unwrap_or(image);
    let repository = match repository.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => repository,
    };
    if repository.starts_with(['-', '.', '/', ':'])
        || repository.ends_with('/')
        || repository.chars().any(|c| c.is_ascii_uppercase())
    {
        return Err((
            "not an image reference".to_owned(),
            Some(format!(
                "the repository is lowercase letters, digits, `.`, `_`, `-` and `/`: image = \"{}\"",
                image.to_ascii_lowercase()
            )),
        ));
    }
    Ok(())
}

/// `image` of a service: `Some(None)` when absent, `None` when wrong (reported).
pub(crate) fn image(w: &mut Walker<'_>, t: &Table<'_, '_>) -> Option<Option<String>> {
    optional(t, "image", |k| w.checked(t, k, "image", check_image))
}

/// `autoscale` of a service: `Some(None)` when absent, `None` when wrong (reported).
pub(crate) fn autoscale(w: &mut Walker<'_>, service: &Table<'_, '_>) -> Option<Option<Autoscale>> {
    let Some(value) = service.get("autoscale") else {
        return Some(None);
    };
    let ctx = format!("`autoscale` of {}", service.ctx);
    let Some(t) = w.table(value, &ctx, AUTOSCALE_KEYS) else {
        let help = "write autoscale = { min = 2, max = 10, cpu = \"70%\" }".to_owned();
        w.wrong_type(service, "autoscale", value, "a table", Some(help));
        return None;
    };
    let min = w
        .required(&t, "min", "min = 2")
        .and_then(|_| w.int(&t, "min", 1, Autoscale::MAX_REPLICAS));
    let max = w
        .required(&t, "max", "max = 10")
        .and_then(|_| w.int(&t, "max", 1, Autoscale::MAX_REPLICAS));
    let cpu = match t.get("cpu") {
        None => Some(Autoscale::DEFAULT_CPU),
        Some(_) => w.unit_value(&t, "cpu", "percentage", "70%", cpu_percent),
    };
    let (min, max, cpu_percent) = (min?, max?, cpu?);
    if max < min {
        let span = t.get("max").map_or(t.span.clone(), |v| v.span());
        w.report(
            Diagnostic::error(format!("`max` is below `min`{}", t.in_ctx()))
                .at(span, format!("{max} < {min}"))
                .help(format!("make `max` at least {min}, e.g. max = {}", min * 2)),
        );
        return None;
    }
    Some(Some(Autoscale {
        min,
        max,
        cpu_percent,
    }))
}

/// `"70%"`: a whole percentage from 1 to 100.
fn cpu_percent(input: &str) -> Result<u32, crate::units::UnitError> {
    let percent = crate::units::percent(input)? * 100.0;
    if (percent - percent.round()).abs() > 1e-9 {
        return Err(crate::units::UnitError::new(
            "not a whole percentage",
            "write e.g. \"70%\"".to_owned(),
        ));
    }
    Ok(percent.round() as u32)
}
