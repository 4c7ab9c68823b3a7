//! `[environments.NAME]` overlays, merged into the base document *before* the schema walk, so
//! that a merged document is checked by exactly the same rules as the base and every value taken
//! from an overlay keeps its span in the overlay.
//!
//! Rules: a table in the overlay merges into the base table key by key (recursively: a
//! service's `health` merges too, and so does a secret's inline table, and `[alerts]` alert by
//! alert); any other value (string, number, array, including `routes` and `notify`) replaces the
//! base value whole.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;
use crate::names::check_name;
use crate::walk::{Value, Walker, did_you_mean, type_name};

/// One `[environments.NAME]` table.
pub(crate) struct Overlay<'a, 'i> {
    pub name: &'a str,
    pub value: &'a Value<'i>,
}

/// Splits `root` into the base document (everything but `environments`) and its overlays,
/// reporting an `environments` value of the wrong shape and invalid environment names.
pub(crate) fn split<'a, 'i>(
    w: &mut Walker<'_>,
    root: &'a DeTable<'i>,
) -> (DeTable<'i>, Vec<Overlay<'a, 'i>>) {
    let mut base = root.clone();
    let mut overlays = Vec::new();
    let Some(envs) = base.remove("environments") else {
        return (base, overlays);
    };
    let Some(envs_ref) = root.get("environments") else {
        return (base, overlays);
    };
    let DeValue::Table(entries) = envs_ref.get_ref() else {
        w.report(
            Diagnostic::error("`environments` must be a table")
                .at(envs.span(), format!("found {}", type_name(envs.get_ref())))
                .help("write one [environments.NAME] table per environment"),
        );
        return (base, overlays);
    };
    for (key, value) in entries.iter() {
        let name = key.get_ref().as_ref();
        if let Err((label, help)) = check_name(name) {
            let mut d = Diagnostic::error(format!("invalid environment name `{name}`"))
                .at(key.span(), label);
            d.help = help;
            w.report(d);
            continue;
        }
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            w.report(
                Diagnostic::error(format!("[environments.{name}] must be a table"))
                    .at(
                        value.span(),
                        format!("found {}", type_name(value.get_ref())),
                    )
                    .help(format!(
                        "write [environments.{name}] and below it the keys it overrides"
                    )),
            );
            continue;
        }
        overlays.push(Overlay { name, value });
    }
    (base, overlays)
}

/// The base document with `overlay` merged in. Reports what an overlay may not do: change
/// `[app]`, nest environments, or name a service the base does not define (those parts are
/// left out of the merge so they cause no follow-up errors).
pub(crate) fn merge<'i>(
    w: &mut Walker<'_>,
    base: &DeTable<'i>,
    overlay: &Overlay<'_, 'i>,
) -> DeTable<'i> {
    let mut merged = base.clone();
    let DeValue::Table(entries) = overlay.value.get_ref() else {
        return merged;
    };
    let ctx = format!("[environments.{}]", overlay.name);
    let mut entries = entries.clone();
    if let Some((key, _)) = entries.remove_entry("app") {
        w.report(
            Diagnostic::error(format!("{ctx} cannot change [app]"))
                .at(key.span(), "not allowed in an environment")
                .help(format!(
                    "the app keeps its name in every environment; with --env {} it runs as `NAME.{}`",
                    overlay.name, overlay.name
                )),
        );
    }
    if let Some((key, _)) = entries.remove_entry("environments") {
        w.report(
            Diagnostic::error(format!("environments cannot be nested in {ctx}"))
                .at(key.span(), "not allowed in an environment")
                .help("define every environment at the top level: [environments.NAME]"),
        );
    }
    if let Some(services) = entries.get_mut("services")
        && let DeValue::Table(overlay_services) = services.get_mut()
    {
        let known: Vec<String> = match base.get("services").map(Spanned::get_ref) {
            Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().to_string()).collect(),
            _ => Vec::new(),
        };
        let unknown: Vec<(Range<usize>, String)> = overlay_services
            .keys()
            .filter(|k| !known.iter().any(|n| n == k.get_ref().as_ref()))
            .map(|k| (k.span(), k.get_ref().to_string()))
            .collect();
        for (span, name) in unknown {
            overlay_services.remove(name.as_str());
            let mut d = Diagnostic::error(format!(
                "{ctx} changes service `{name}`, which the base file does not define"
            ));
            d = match did_you_mean(&name, known.iter().map(String::as_str)) {
                Some(close) => d.at(span, format!("did you mean `{close}`?")),
                None => d.at(span, "no such service").help(format!(
                    "an environment changes services, it does not add them; define [services.{name}] in the base file"
                )),
            };
            w.report(d);
        }
    }
    merge_into(&mut merged, entries);
    merged
}

fn merge_into<'i>(base: &mut DeTable<'i>, overlay: DeTable<'i>) {
    for (key, value) in overlay {
        if let Some(existing) = base.get_mut(key.get_ref().as_ref())
            && let DeValue::Table(base_table) = existing.get_mut()
            && let DeValue::Table(_) = value.get_ref()
        {
            let DeValue::Table(overlay_table) = value.into_inner() else {
                unreachable!("checked above")
            };
            merge_into(base_table, overlay_table);
            continue;
        }
        // Replace key and value, so both spans point into the overlay.
        base.remove(key.get_ref().as_ref());
        base.insert(key, value);
    }
}

/// Whether `span` (of a diagnostic) points into `value`'s text: at one of its keys or values,
/// however deep.
pub(crate) fn covers(value: &Value<'_>, span: &Range<usize>) -> bool {
    let inside = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    match value.get_ref() {
        DeValue::Table(t) => {
            inside(value.span()) || t.iter().any(|(k, v)| inside(k.span()) || covers(v, span))
        }
        DeValue::Array(items) => inside(value.span()) || items.iter().any(|v| covers(v, span)),
        _ => inside(value.span()),
    }
}
