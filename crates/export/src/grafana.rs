//! `berth export grafana`: a dashboard (Grafana's JSON model, schema version 39) with request
//! rate, errors, latency and instances for the app, then a row per route, over the series
//! `/metrics` serves. Every query is plain PromQL (fixed `[5m]` windows, no Grafana variables
//! inside an expression), so `promtool` can check each one; [`expressions`] lists them.

use serde_json::{Value, json};
use spec::{AppSpec, RouteTarget};

use crate::File;
use crate::prometheus::{app_selector, route_selector};

/// Grafana's dashboard schema version this file is written in (Grafana 10.4 and 11).
pub const SCHEMA_VERSION: u32 = 39;

/// One panel's queries: (legend, PromQL).
struct Panel {
    title: String,
    unit: &'static str,
    targets: Vec<(String, String)>,
}

fn panels(app: &AppSpec) -> Vec<(String, Vec<Panel>)> {
    let name = app.instance_name();
    let r = route_selector(app);
    let a = app_selector(app);
    let mut rows = vec![(
        format!("{name}: all routes"),
        vec![
            rate_panel("Requests/s by route", &r, "{{route}}"),
            errors_panel("5xx share by route", &r, "{{route}}"),
            latency_panel("p95 latency by route", &r, &[0.95], "{{route}}"),
            Panel {
                title: "Instances ready by service".to_owned(),
                unit: "short",
                targets: vec![
                    (
                        "{{service}} ready".to_owned(),
                        format!("sum by (service) (berth_instance_ready{{{a}}})"),
                    ),
                    (
                        "{{service}} running".to_owned(),
                        format!("count by (service) (berth_instance_ready{{{a}}})"),
                    ),
                    (
                        "{{service}} restarts (5m)".to_owned(),
                        format!(
                            "sum by (service) (increase(berth_instance_restarts_total{{{a}}}[5m]))"
                        ),
                    ),
                ],
            },
        ],
    )];
    for route in &app.routes {
        let id = format!("{name}:{}{}", route.host, route.path);
        let sel = format!(
            "route=\"{}\"",
            id.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let target = match &route.target {
            RouteTarget::Service(s) => format!("service {s}"),
            RouteTarget::Static { dir, .. } => format!("static {dir}"),
        };
        rows.push((
            format!("route {}{} ({target})", route.host, route.path),
            vec![
                rate_panel("Requests/s by status class", &sel, "{{class}}"),
                errors_panel("5xx share", &sel, "5xx"),
                latency_panel("Latency", &sel, &[0.5, 0.95, 0.99], ""),
            ],
        ));
    }
    rows
}

fn rate_panel(title: &str, sel: &str, legend: &str) -> Panel {
    let by = if legend == "{{class}}" {
        "class"
    } else {
        "route"
    };
    Panel {
        title: title.to_owned(),
        unit: "reqps",
        targets: vec![(
            legend.to_owned(),
            format!("sum by ({by}) (rate(berth_proxy_requests_total{{{sel}}}[5m]))"),
        )],
    }
}

fn errors_panel(title: &str, sel: &str, legend: &str) -> Panel {
    Panel {
        title: title.to_owned(),
        unit: "percentunit",
        targets: vec![(
            legend.to_owned(),
            format!(
                "sum by (route) (rate(berth_proxy_requests_total{{{sel},class=\"5xx\"}}[5m])) / sum by (route) (rate(berth_proxy_requests_total{{{sel}}}[5m]))"
            ),
        )],
    }
}

fn latency_panel(title: &str, sel: &str, quantiles: &[f64], legend: &str) -> Panel {
    Panel {
        title: title.to_owned(),
        unit: "s",
        targets: quantiles
            .iter()
            .map(|q| {
                let legend = if legend.is_empty() {
                    format!("p{}", (q * 100.0).round())
                } else {
                    legend.to_owned()
                };
                (
                    legend,
                    format!(
                        "histogram_quantile({q}, sum by (route, le) (rate(berth_proxy_request_duration_seconds_bucket{{{sel}}}[5m])))"
                    ),
                )
            })
            .collect(),
    }
}

/// Every PromQL expression of the dashboard, in order.
pub fn expressions(app: &AppSpec) -> Vec<String> {
    panels(app)
        .into_iter()
        .flat_map(|(_, ps)| ps)
        .flat_map(|p| p.targets)
        .map(|(_, expr)| expr)
        .collect()
}

/// `berth-APP.dashboard.json`.
pub fn dashboard(app: &AppSpec) -> File {
    let name = app.instance_name();
    let datasource = json!({ "type": "prometheus", "uid": "${datasource}" });
    let mut out: Vec<Value> = Vec::new();
    let mut id = 0;
    let mut y = 0;
    for (row_title, row) in panels(app) {
        id += 1;
        out.push(json!({
            "type": "row", "id": id, "title": row_title, "collapsed": false,
            "gridPos": { "h": 1, "w": 24, "x": 0, "y": y }, "panels": [],
        }));
        y += 1;
        let width = 24 / u32::try_from(row.len()).unwrap_or(1).max(1);
        for (i, p) in row.into_iter().enumerate() {
            id += 1;
            let targets: Vec<Value> = p
                .targets
                .into_iter()
                .enumerate()
                .map(|(n, (legend, expr))| {
                    json!({
                        "datasource": datasource, "expr": expr, "legendFormat": legend,
                        "refId": char::from(b'A' + u8::try_from(n).unwrap_or(0)).to_string(),
                    })
                })
                .collect();
            out.push(json!({
                "type": "timeseries", "id": id, "title": p.title, "datasource": datasource,
                "gridPos": { "h": 8, "w": width, "x": width * u32::try_from(i).unwrap_or(0), "y": y },
                "fieldConfig": { "defaults": { "unit": p.unit }, "overrides": [] },
                "options": { "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true },
                             "tooltip": { "mode": "multi", "sort": "desc" } },
                "targets": targets,
            }));
        }
        y += 8;
    }
    let dashboard = json!({
        "title": format!("berth: {name}"),
        // Grafana takes uids of at most 40 characters.
        "uid": format!("berth-{}", name.replace('.', "-")).chars().take(40).collect::<String>(),
        "tags": ["berth"],
        "timezone": "browser",
        "editable": true,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": { "from": "now-6h", "to": "now" },
        "templating": { "list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0,
        }] },
        "annotations": { "list": [] },
        "panels": out,
    });
    let text = serde_json::to_string_pretty(&dashboard).unwrap_or_default();
    File::new(format!("berth-{name}.dashboard.json"), text + "\n")
}
