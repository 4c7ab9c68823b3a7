//! `berth export kubernetes`: the app as Kubernetes manifests. Per service a Deployment
//! (`workload.rs`: replicas, command, env, secrets as `secretKeyRef`s, probes, limits,
//! graceful stop) and, when a route points at it, a Service and a NetworkPolicy admitting only
//! the ingress controller; a HorizontalPodAutoscaler for `autoscale`; Ingresses from the routes
//! (`ingress.rs`: hosts, paths, cert-manager for `[tls] acme`, ingress-nginx annotations for
//! rate limits and body sizes); an nginx Deployment for static routes; a CronJob per
//! PostgreSQL backup.
//!
//! Secrets are referenced by name in the Secret `APP-secrets`, which the operator creates;
//! their values are never known here. Names: the app's instance name with `.` as `-`
//! (`shop-staging`), then `-SERVICE`.

mod ingress;
mod workload;

use serde_json::{Value, json};
use spec::AppSpec;

use crate::{Error, File, yaml};

/// Cluster-side choices the spec does not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `metadata.namespace` of every object; `None` leaves it to `kubectl -n`.
    pub namespace: Option<String>,
    /// `ingressClassName` (default `nginx`, the ingress-nginx controller).
    pub ingress_class: String,
    /// The namespace the ingress controller runs in, admitted by the NetworkPolicies.
    pub ingress_namespace: String,
    /// cert-manager `ClusterIssuer` for apps with `[tls] acme`.
    pub cluster_issuer: String,
    /// An nginx image holding the static routes' built directories under
    /// `/usr/share/nginx/html/DIR`; required when the app has static routes.
    pub static_image: Option<String>,
    /// The image of backup CronJobs (has `pg_dump`).
    pub backup_image: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            ingress_class: "nginx".to_owned(),
            ingress_namespace: "ingress-nginx".to_owned(),
            cluster_issuer: "letsencrypt".to_owned(),
            static_image: None,
            backup_image: "postgres:16-alpine".to_owned(),
        }
    }
}

/// The container port every service listens on (`PORT`).
pub const PORT: u16 = 8080;

/// The base of every name: `shop`, `shop-staging`.
pub fn base_name(app: &AppSpec) -> String {
    app.instance_name().replace('.', "-")
}

/// The Secret the manifests reference.
pub fn secret_name(app: &AppSpec) -> String {
    format!("{}-secrets", base_name(app))
}

/// `metadata` with the app's labels.
pub(crate) fn metadata(app: &AppSpec, o: &Options, name: &str, component: &str) -> Value {
    let mut labels = labels(app, component);
    labels["app.kubernetes.io/managed-by"] = json!("berth");
    let mut m = json!({ "name": name, "labels": labels });
    if let Some(ns) = &o.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// The labels that select a component's pods.
pub(crate) fn labels(app: &AppSpec, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": base_name(app),
        "app.kubernetes.io/component": component,
    })
}

/// Every manifest, one file per object group (`shop-web.yaml`, `shop-ingress.yaml`, …).
pub fn files(app: &AppSpec, o: &Options) -> Result<Vec<File>, Error> {
    let base = base_name(app);
    let mut out = Vec::new();
    for (name, service) in &app.services {
        let docs = workload::service(app, o, name, service)?;
        out.push(file(app, format!("{base}-{name}.yaml"), &docs));
    }
    if let Some(docs) = workload::static_site(app, o)? {
        out.push(file(app, format!("{base}-static.yaml"), &docs));
    }
    let ingresses = ingress::ingresses(app, o);
    if !ingresses.is_empty() {
        out.push(file(app, format!("{base}-ingress.yaml"), &ingresses));
    }
    let cronjobs = workload::backups(app, o);
    if !cronjobs.is_empty() {
        out.push(file(app, format!("{base}-backups.yaml"), &cronjobs));
    }
    Ok(out)
}

fn file(app: &AppSpec, path: String, docs: &[Value]) -> File {
    let mut header = String::from("# Made by `berth export kubernetes` from berth.toml.\n");
    if !app.secrets.is_empty() {
        let keys: Vec<&str> = app.secrets.keys().map(String::as_str).collect();
        header.push_str(&format!(
            "# Secrets come from the Secret {} (keys {}), which this export never writes:\n#   kubectl create secret generic {} --from-literal=NAME=VALUE ...\n",
            secret_name(app),
            keys.join(", "),
            secret_name(app)
        ));
    }
    File::new(path, header + &yaml::documents(docs))
}

/// What the manifests leave out of berth.toml, for the operator to hear about.
pub fn notes(app: &AppSpec) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, b) in &app.backups {
        let postgres = matches!(
            &b.source,
            spec::BackupSource::Database(db)
                if matches!(app.databases.get(db).map(|d| &d.engine), Some(spec::DatabaseEngine::Postgres { .. }))
        );
        if !postgres {
            notes.push(format!(
                "[backups.{name}] has no CronJob: it backs up a file or directory of berth's shared directory, which a cluster does not have (use a volume snapshot)"
            ));
        }
    }
    for r in &app.routes {
        if r.strip_prefix && matches!(r.target, spec::RouteTarget::Service(_)) {
            notes.push(format!(
                "route {}{}: strip_prefix is not carried over (the service gets the whole path); add an ingress-nginx rewrite if it needs one",
                r.host, r.path
            ));
        }
    }
    notes
}

/// Every file as one stream of YAML documents (for stdout).
pub fn one_document(files: &[File]) -> String {
    files
        .iter()
        .map(|f| f.contents.as_str())
        .collect::<Vec<_>>()
        .join("---\n")
}
