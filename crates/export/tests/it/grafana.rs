//! The dashboard: current schema, panels per app and route, and every query checked by
//! promtool (as recording rules).

use serde_json::{Value, json};

use crate::{run_ok, shop, tool, write};

#[test]
fn every_query_passes_promtool() {
    let app = shop();
    let exprs = export::grafana::expressions(&app);
    assert!(exprs.len() >= 4 + 3 * app.routes.len(), "{exprs:?}");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "record": format!("berth:dashboard_query_{i}"), "expr": e }))
        .collect();
    let doc = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "dashboard.rules.json", &doc.to_string());
    run_ok(
        tool("promtool", "prometheus")
            .args(["check", "rules"])
            .arg(path),
    );
}

#[test]
fn dashboard_has_rate_errors_latency_and_instances_per_app_and_route() {
    let app = shop();
    let file = export::grafana::dashboard(&app);
    assert_eq!(file.path, "berth-shop.dashboard.json");
    let d: Value = serde_json::from_str(&file.contents).unwrap();
    assert_eq!(d["schemaVersion"], 39);
    let panels = d["panels"].as_array().unwrap();
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 1 + app.routes.len(), "{rows:?}");
    let titles: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "timeseries")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for t in [
        "Requests/s by route",
        "5xx share by route",
        "p95 latency by route",
        "Instances ready by service",
    ] {
        assert!(titles.contains(&t), "no {t}: {titles:?}");
    }
    let text = file.contents;
    for series in [
        "berth_proxy_requests_total",
        "berth_proxy_request_duration_seconds_bucket",
        "berth_instance_ready",
        "route=\\\"shop:shop.example.com/api/\\\"",
    ] {
        assert!(text.contains(series), "no {series}");
    }
    // Unique ids and a datasource variable.
    let mut ids: Vec<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), panels.len());
    assert_eq!(d["templating"]["list"][0]["type"], "datasource");
}
