//! Ingresses from the routes. ingress-nginx takes rate limits and body sizes per Ingress, so
//! routes are grouped by (rate-limit zone, body limit): one Ingress per group, the first named
//! `APP`, the others `APP-ZONE` / `APP-N`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use spec::{AppSpec, RouteSpec, RouteTarget, TlsSpec};

use super::{Options, base_name, metadata};

/// ingress-nginx's rate annotations for a zone: per second or per minute, and the burst as a
/// multiplier of the rate (its only way to say burst).
fn rate_annotations(rate: &spec::RateSpec) -> Vec<(&'static str, String)> {
    let per_minute = match rate.per.as_secs() {
        1 => None,
        60 => Some(rate.requests),
        // Per hour: as per minute, rounded up so a legal client is never refused.
        _ => Some(rate.requests.div_ceil(60).max(1)),
    };
    let (key, n) = match per_minute {
        None => ("nginx.ingress.kubernetes.io/limit-rps", rate.requests),
        Some(n) => ("nginx.ingress.kubernetes.io/limit-rpm", n),
    };
    let multiplier = rate.burst.div_ceil(n.max(1)).max(1);
    vec![
        (key, n.to_string()),
        (
            "nginx.ingress.kubernetes.io/limit-burst-multiplier",
            multiplier.to_string(),
        ),
    ]
}

fn backend(app: &AppSpec, route: &RouteSpec) -> String {
    match &route.target {
        RouteTarget::Service(s) => format!("{}-{s}", base_name(app)),
        RouteTarget::Static { .. } => format!("{}-static", base_name(app)),
    }
}

pub(super) fn ingresses(app: &AppSpec, o: &Options) -> Vec<Value> {
    let mut groups: BTreeMap<(Option<String>, u64), Vec<&RouteSpec>> = BTreeMap::new();
    for r in &app.routes {
        let body = r.max_body.unwrap_or(app.proxy.max_body);
        groups
            .entry((r.rate_limit.clone(), body))
            .or_default()
            .push(r);
    }
    let acme = matches!(app.tls, Some(TlsSpec::Acme { .. }));
    let base = base_name(app);
    let mut out = Vec::new();
    for (n, ((zone, body), routes)) in groups.into_iter().enumerate() {
        let name = match (n, &zone) {
            (0, _) => base.clone(),
            (_, Some(zone)) => format!("{base}-{}", zone.replace('_', "-")),
            (_, None) => format!("{base}-{n}"),
        };
        let mut annotations = serde_json::Map::new();
        annotations.insert(
            "nginx.ingress.kubernetes.io/proxy-body-size".into(),
            json!(format!("{}k", body.div_ceil(1024))),
        );
        let timeout = app.proxy.response_timeout.max(Duration::from_secs(1));
        annotations.insert(
            "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
            json!(timeout.as_secs().to_string()),
        );
        if let Some(rate) = zone.as_ref().and_then(|z| app.proxy.rate_limits.get(z)) {
            for (k, v) in rate_annotations(rate) {
                annotations.insert(k.into(), json!(v));
            }
        }
        // One certificate for the app: cert-manager (on the first Ingress) puts every host
        // of the app in the Secret `APP-tls`, which every Ingress names.
        if acme && n == 0 {
            annotations.insert(
                "cert-manager.io/cluster-issuer".into(),
                json!(o.cluster_issuer),
            );
        }
        let mut by_host: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for r in &routes {
            by_host.entry(r.host.as_str()).or_default().push(json!({
                "path": r.path,
                "pathType": "Prefix",
                "backend": { "service": { "name": backend(app, r), "port": { "name": "http" } } },
            }));
        }
        let rules: Vec<Value> = by_host
            .into_iter()
            .map(|(host, paths)| {
                let mut rule = json!({ "http": { "paths": paths } });
                if host != "*" {
                    rule["host"] = json!(host);
                }
                rule
            })
            .collect();
        let mut meta = metadata(app, o, &name, "ingress");
        meta["annotations"] = Value::Object(annotations);
        let mut spec = json!({ "ingressClassName": o.ingress_class, "rules": rules });
        let hosts = if n == 0 {
            spec::certificate_names(&app.routes)
        } else {
            let own: Vec<RouteSpec> = routes.iter().map(|r| (*r).clone()).collect();
            spec::certificate_names(&own)
        };
        if app.tls.is_some() && !hosts.is_empty() {
            spec["tls"] = json!([{ "hosts": hosts, "secretName": format!("{base}-tls") }]);
        }
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": spec,
        }));
    }
    out
}
