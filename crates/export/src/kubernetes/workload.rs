//! Deployments, Services, NetworkPolicies, HorizontalPodAutoscalers and backup CronJobs.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use spec::{AppSpec, BackupSource, DatabaseEngine, RouteTarget, ServiceSpec};

use super::{Options, PORT, base_name, labels, metadata, secret_name};
use crate::Error;

/// Whether a route points at `service`.
fn routed(app: &AppSpec, service: &str) -> bool {
    app.routes
        .iter()
        .any(|r| matches!(&r.target, RouteTarget::Service(s) if s == service))
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A berth.toml template (`${NAME}` references) as a Kubernetes env value: `$(NAME)`, which
/// the kubelet expands from variables defined earlier in the list; a literal `$(` is escaped.
fn k8s_template(app: &AppSpec, template: &str) -> String {
    let escaped = template.replace("$(", "$$(");
    spec::expand(&escaped, |name| {
        (app.env.contains_key(name) || app.secrets.contains_key(name)).then(|| format!("$({name})"))
    })
}

/// The container's environment: berth's own variables, every secret as a `secretKeyRef`, then
/// `[env]` in an order where each value comes after what it references.
pub(super) fn env(app: &AppSpec, service: &str) -> Vec<Value> {
    let mut out = vec![
        json!({ "name": "PORT", "value": PORT.to_string() }),
        json!({ "name": "BERTH_APP", "value": app.instance_name() }),
        json!({ "name": "BERTH_SERVICE", "value": service }),
    ];
    for name in app.secrets.keys() {
        out.push(json!({
            "name": name,
            "valueFrom": { "secretKeyRef": { "name": secret_name(app), "key": name } },
        }));
    }
    let mut done: BTreeSet<&str> = app.secrets.keys().map(String::as_str).collect();
    let mut left: Vec<(&String, &String)> = app.env.iter().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|(key, value)| {
            let ready = std::cell::Cell::new(true);
            spec::expand(value, |name| {
                if app.env.contains_key(name) && !done.contains(name) {
                    ready.set(false);
                }
                None
            });
            let ready = ready.get();
            if ready {
                out.push(json!({ "name": key, "value": k8s_template(app, value) }));
                done.insert(key.as_str());
            }
            !ready
        });
        if left.len() == before {
            // A cycle (parse refuses those): keep the rest in file order.
            for (key, value) in left.drain(..) {
                out.push(json!({ "name": key, "value": k8s_template(app, value) }));
            }
        }
    }
    out
}

fn probe(s: &ServiceSpec, liveness: bool) -> Option<Value> {
    let h = s.health.as_ref()?;
    let mut p = json!({
        "httpGet": { "path": h.path, "port": "http" },
        "periodSeconds": whole_seconds(h.interval).max(1),
        "timeoutSeconds": whole_seconds(h.timeout).max(1),
        "failureThreshold": h.unhealthy_after,
    });
    if !liveness {
        p["successThreshold"] = json!(h.healthy_after);
    }
    Some(p)
}

/// `start_deadline` as a startup probe: as many failures as fit in it.
fn startup_probe(s: &ServiceSpec) -> Option<Value> {
    let h = s.health.as_ref()?;
    let period = whole_seconds(h.interval).max(1);
    Some(json!({
        "httpGet": { "path": h.path, "port": "http" },
        "periodSeconds": period,
        "timeoutSeconds": whole_seconds(h.timeout).max(1),
        "failureThreshold": whole_seconds(h.start_deadline).div_ceil(period).max(1),
    }))
}

fn resources(s: &ServiceSpec) -> Value {
    let mut limits = serde_json::Map::new();
    let mut requests = serde_json::Map::new();
    if let Some(bytes) = s.memory_max {
        limits.insert("memory".into(), json!(bytes.to_string()));
        requests.insert("memory".into(), json!(bytes.to_string()));
    }
    let cpu = match s.cpu_max {
        Some(cpus) => Some(format!("{}m", (cpus * 1000.0).round() as u64)),
        // The autoscaler measures CPU against the request: a service without cpu_max asks
        // for a tenth of a CPU.
        None => s.autoscale.map(|_| "100m".to_owned()),
    };
    if let Some(cpu) = cpu {
        if s.cpu_max.is_some() {
            limits.insert("cpu".into(), json!(cpu));
        }
        requests.insert("cpu".into(), json!(cpu));
    }
    json!({ "limits": limits, "requests": requests })
}

/// A service's Deployment, and when routed its Service and NetworkPolicy; its HPA.
pub(super) fn service(
    app: &AppSpec,
    o: &Options,
    name: &str,
    s: &ServiceSpec,
) -> Result<Vec<Value>, Error> {
    let image = s.image.clone().ok_or_else(|| Error::MissingImage {
        service: name.to_owned(),
    })?;
    let full = format!("{}-{name}", base_name(app));
    let is_routed = routed(app, name);
    let mut container = json!({
        "name": name,
        "image": image,
        "command": ["/bin/sh", "-c", s.command],
        "env": env(app, name),
        "resources": resources(s),
        "securityContext": { "allowPrivilegeEscalation": !s.sandbox.no_new_privs },
    });
    if is_routed || s.health.is_some() {
        container["ports"] = json!([{ "name": "http", "containerPort": PORT }]);
    }
    if let Some(p) = probe(s, false) {
        container["readinessProbe"] = p;
    }
    if let Some(p) = probe(s, true) {
        container["livenessProbe"] = p;
    }
    if let Some(p) = startup_probe(s) {
        container["startupProbe"] = p;
    }
    let replicas = match s.autoscale {
        Some(a) => s.instances.clamp(a.min, a.max),
        None => s.instances,
    };
    let mut docs = vec![json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(app, o, &full, name),
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": labels(app, name) },
            "template": {
                "metadata": { "labels": labels(app, name) },
                "spec": {
                    "terminationGracePeriodSeconds": whole_seconds(s.stop_timeout),
                    "containers": [container],
                },
            },
        },
    })];
    if is_routed {
        docs.push(service_object(app, o, &full, name, "http"));
        docs.push(network_policy(app, o, &full, name, "http"));
    }
    if let Some(a) = s.autoscale {
        docs.push(json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(app, o, &full, name),
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": full },
                "minReplicas": a.min,
                "maxReplicas": a.max,
                "metrics": [{ "type": "Resource", "resource": {
                    "name": "cpu",
                    "target": { "type": "Utilization", "averageUtilization": a.cpu_percent },
                } }],
            },
        }));
    }
    Ok(docs)
}

fn service_object(app: &AppSpec, o: &Options, full: &str, component: &str, port: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(app, o, full, component),
        "spec": {
            "selector": labels(app, component),
            "ports": [{ "name": "http", "port": 80, "targetPort": port }],
        },
    })
}

/// Only the ingress controller's namespace reaches the pods of a routed component.
fn network_policy(app: &AppSpec, o: &Options, full: &str, component: &str, port: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(app, o, full, component),
        "spec": {
            "podSelector": { "matchLabels": labels(app, component) },
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{ "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": o.ingress_namespace,
                } } }],
                "ports": [{ "protocol": "TCP", "port": port }],
            }],
        },
    })
}

/// Static routes: one nginx Deployment (`--static-image`) serving every static directory,
/// configured like berth's proxy (whole path under the directory, or the prefix stripped;
/// SPA fallback to the directory's `index.html`).
pub(super) fn static_site(app: &AppSpec, o: &Options) -> Result<Option<Vec<Value>>, Error> {
    let statics: Vec<_> = app
        .routes
        .iter()
        .filter_map(|r| match &r.target {
            RouteTarget::Static { dir, spa } => Some((r, dir, *spa)),
            RouteTarget::Service(_) => None,
        })
        .collect();
    let Some((first, dir, _)) = statics.first() else {
        return Ok(None);
    };
    let Some(image) = &o.static_image else {
        return Err(Error::StaticNeedsImage {
            route: format!("{}{}", first.host, first.path),
            dir: (*dir).clone(),
        });
    };
    let full = format!("{}-static", base_name(app));
    let mut conf = format!("server {{\n    listen {PORT};\n");
    for (i, (route, dir, spa)) in statics.iter().enumerate() {
        let root = format!("/usr/share/nginx/html/{dir}");
        let fallback = if *spa {
            format!("@spa{i}")
        } else {
            "=404".to_owned()
        };
        let path = &route.path;
        let place = if route.strip_prefix {
            format!("alias {root}/;")
        } else {
            format!("root {root};")
        };
        conf.push_str(&format!(
            "    location ^~ {path} {{\n        {place}\n        try_files $uri $uri/ {fallback};\n    }}\n"
        ));
        if *spa {
            conf.push_str(&format!(
                "    location @spa{i} {{\n        root {root};\n        rewrite ^ /index.html break;\n    }}\n"
            ));
        }
    }
    conf.push_str("}\n");
    let container = json!({
        "name": "static",
        "image": image,
        "ports": [{ "name": "http", "containerPort": PORT }],
        "readinessProbe": { "tcpSocket": { "port": "http" }, "periodSeconds": 5 },
        "volumeMounts": [{ "name": "conf", "mountPath": "/etc/nginx/conf.d" }],
        "securityContext": { "allowPrivilegeEscalation": false },
    });
    Ok(Some(vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(app, o, &full, "static"),
            "data": { "default.conf": conf },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(app, o, &full, "static"),
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": labels(app, "static") },
                "template": {
                    "metadata": { "labels": labels(app, "static") },
                    "spec": {
                        "containers": [container],
                        "volumes": [{ "name": "conf", "configMap": { "name": full } }],
                    },
                },
            },
        }),
        service_object(app, o, &full, "static", "http"),
        network_policy(app, o, &full, "static", "http"),
    ]))
}

/// A CronJob per backup of a PostgreSQL database: `pg_dump` on the same schedule into the
/// volume claim `APP-backups`. SQLite files and directories live in berth's shared directory,
/// which has no equivalent in a cluster: they get none.
pub(super) fn backups(app: &AppSpec, o: &Options) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, b) in &app.backups {
        let BackupSource::Database(db) = &b.source else {
            continue;
        };
        let Some(DatabaseEngine::Postgres { url, .. }) = app.databases.get(db).map(|d| &d.engine)
        else {
            continue;
        };
        let full = format!("{}-backup-{name}", base_name(app));
        let mut env = env(app, "backup");
        env.push(json!({ "name": "BERTH_BACKUP_URL", "value": k8s_template(app, url) }));
        let script = format!(
            "pg_dump --format=custom --dbname=\"$BERTH_BACKUP_URL\" --file=/backups/{name}-$$(date -u +%Y%m%dT%H%M%SZ).dump"
        );
        out.push(json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": metadata(app, o, &full, "backup"),
            "spec": {
                "schedule": b.schedule,
                "concurrencyPolicy": "Forbid",
                "jobTemplate": { "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": { "labels": labels(app, "backup") },
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{
                                "name": "pg-dump",
                                "image": o.backup_image,
                                "command": ["/bin/sh", "-c", script],
                                "env": env,
                                "volumeMounts": [{ "name": "backups", "mountPath": "/backups" }],
                            }],
                            "volumes": [{ "name": "backups", "persistentVolumeClaim": {
                                "claimName": format!("{}-backups", base_name(app)),
                            } }],
                        },
                    },
                } },
            },
        }));
    }
    out
}
