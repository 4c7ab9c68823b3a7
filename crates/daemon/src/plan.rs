//! What a rollout of a new spec over the running one does, computed once from the two specs:
//! the instances it starts before the switch, replaces one at a time after it, stops and
//! drains, and the differences an operator reviews. `deploy --dry-run` shows this value and a
//! rollout carries it out, so the plan shown is the plan run. Env values are never shown, only
//! which keys change.

use std::collections::BTreeSet;

use spec::{AppSpec, RouteSpec, RouteTarget, ServiceSpec, TlsSpec};

use crate::release::{Slot, all_slots};

pub(crate) struct Plan {
    /// Started, and ready, before the switch: the routed services' instances, or every
    /// instance when nothing runs yet.
    pub first: Vec<Slot>,
    /// Unrouted instances (workers) replaced one at a time once the new release has passed
    /// its checks: start the new one, wait for it to be ready, stop the old one.
    pub workers: Vec<Slot>,
    /// Old unrouted instances the new release no longer has: stopped after the workers.
    pub retire: Vec<Slot>,
    /// Old routed instances: out of the route table at the switch, drained and stopped last.
    pub drain: Vec<Slot>,
    changes: Changes,
}

/// The differences between the two specs, as lines for a person.
struct Changes {
    build: Option<String>,
    services_added: Vec<String>,
    services_removed: Vec<String>,
    services_changed: Vec<String>,
    routes_added: Vec<String>,
    routes_removed: Vec<String>,
    env_changed: Vec<String>,
    settings_changed: Vec<String>,
    instances: Vec<(String, u32)>,
}

impl Plan {
    /// The plan for `new` replacing `old` (`None`: nothing runs).
    pub fn new(new: &AppSpec, old: Option<&AppSpec>) -> Plan {
        let routed_new = routed_services(new);
        let (first, workers, retire, drain) = match old {
            None => (all_slots(new), vec![], vec![], vec![]),
            Some(old) => {
                let routed_old = routed_services(old);
                let (first, workers): (Vec<Slot>, Vec<Slot>) = all_slots(new)
                    .into_iter()
                    .partition(|(s, _)| routed_new.contains(s.as_str()));
                let (drain, retire): (Vec<Slot>, Vec<Slot>) = all_slots(old)
                    .into_iter()
                    .partition(|(s, _)| routed_old.contains(s.as_str()));
                let retire = retire
                    .into_iter()
                    .filter(|s| !workers.contains(s))
                    .collect();
                (first, workers, retire, drain)
            }
        };
        Plan {
            first,
            workers,
            retire,
            drain,
            changes: Changes::between(new, old),
        }
    }

    /// The plan as the API shows it.
    pub fn to_api(&self, app: String, current: Option<String>) -> api::Plan {
        let c = &self.changes;
        let names = |slots: &[Slot]| slots.iter().map(|(s, i)| format!("{s}.{i}")).collect();
        api::Plan {
            app,
            current,
            build: c.build.clone(),
            services_added: c.services_added.clone(),
            services_removed: c.services_removed.clone(),
            services_changed: c.services_changed.clone(),
            routes_added: c.routes_added.clone(),
            routes_removed: c.routes_removed.clone(),
            env_changed: c.env_changed.clone(),
            settings_changed: c.settings_changed.clone(),
            instances: c.instances.clone(),
            start: names(&self.first),
            replace: names(&self.workers),
            stop: names(&self.retire),
            drain: names(&self.drain),
        }
    }
}

impl Changes {
    fn between(new: &AppSpec, old: Option<&AppSpec>) -> Changes {
        let empty = AppSpec {
            services: Default::default(),
            routes: vec![],
            env: Default::default(),
            tls: None,
            ..new.clone()
        };
        let old = old.unwrap_or(&empty);
        let services_added = new
            .services
            .keys()
            .filter(|k| !old.services.contains_key(*k))
            .cloned()
            .collect();
        let services_removed = old
            .services
            .keys()
            .filter(|k| !new.services.contains_key(*k))
            .cloned()
            .collect();
        let services_changed = new
            .services
            .iter()
            .filter_map(|(name, s)| old.services.get(name).map(|o| (name, o, s)))
            .flat_map(|(name, o, s)| {
                service_changes(o, s)
                    .into_iter()
                    .map(move |c| format!("{name}: {c}"))
            })
            .collect();
        let old_routes: Vec<String> = old.routes.iter().map(route_line).collect();
        let new_routes: Vec<String> = new.routes.iter().map(route_line).collect();
        let mut env_changed = Vec::new();
        for (k, v) in &new.env {
            match old.env.get(k) {
                None => env_changed.push(format!("+{k}")),
                Some(ov) if ov != v => env_changed.push(format!("~{k}")),
                Some(_) => {}
            }
        }
        env_changed.extend(
            old.env
                .keys()
                .filter(|k| !new.env.contains_key(*k))
                .map(|k| format!("-{k}")),
        );
        Changes {
            build: new.build.as_ref().map(|b| b.command.clone()),
            services_added,
            services_removed,
            services_changed,
            routes_added: new_routes
                .iter()
                .filter(|r| !old_routes.contains(r))
                .cloned()
                .collect(),
            routes_removed: old_routes
                .iter()
                .filter(|r| !new_routes.contains(r))
                .cloned()
                .collect(),
            env_changed,
            settings_changed: settings_changes(old, new),
            instances: new
                .services
                .iter()
                .map(|(n, s)| (n.clone(), s.instances))
                .collect(),
        }
    }
}

/// Services that some route sends traffic to.
pub(crate) fn routed_services(spec: &AppSpec) -> BTreeSet<&str> {
    spec.routes
        .iter()
        .filter_map(|r| match &r.target {
            RouteTarget::Service(s) => Some(s.as_str()),
            RouteTarget::Static { .. } => None,
        })
        .collect()
}

fn settings_changes(old: &AppSpec, new: &AppSpec) -> Vec<String> {
    let mut out = Vec::new();
    let names = spec::certificate_names(&new.routes);
    if old.tls != new.tls || (new.tls.is_some() && spec::certificate_names(&old.routes) != names) {
        out.push(format!(
            "tls: {} -> {}",
            tls_line(old.tls.as_ref(), &spec::certificate_names(&old.routes)),
            tls_line(new.tls.as_ref(), &names)
        ));
    }
    if old.proxy != new.proxy {
        out.push("[proxy] changed".to_owned());
    }
    if old.deploy != new.deploy {
        out.push("[deploy] changed".to_owned());
    }
    out
}

fn tls_line(tls: Option<&TlsSpec>, names: &[String]) -> String {
    let source = match tls {
        None => return "none".to_owned(),
        Some(TlsSpec::Acme { .. }) => "acme",
        Some(TlsSpec::SelfSigned) => "self-signed",
        Some(TlsSpec::Files { .. }) => "files",
    };
    format!("{source} ({})", names.join(", "))
}

fn service_changes(old: &ServiceSpec, new: &ServiceSpec) -> Vec<String> {
    let mut out = Vec::new();
    if old.instances != new.instances {
        out.push(format!("instances {} -> {}", old.instances, new.instances));
    }
    if old.command != new.command {
        out.push("command changed".to_owned());
    }
    if old.health != new.health {
        out.push("health check changed".to_owned());
    }
    if old.stop_timeout != new.stop_timeout {
        out.push(format!(
            "stop_timeout {:?} -> {:?}",
            old.stop_timeout, new.stop_timeout
        ));
    }
    if old.memory_max != new.memory_max {
        out.push("memory_max changed".to_owned());
    }
    out
}

fn route_line(r: &RouteSpec) -> String {
    let target = match &r.target {
        RouteTarget::Service(s) => format!("service {s}"),
        RouteTarget::Static { dir, spa } => {
            format!("static {dir}{}", if *spa { " (spa)" } else { "" })
        }
    };
    format!("{}{} -> {target}", r.host, r.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(src: &str) -> AppSpec {
        spec::parse("berth.toml", src).unwrap()
    }

    fn plan(new: &AppSpec, old: Option<&AppSpec>, current: Option<String>) -> api::Plan {
        Plan::new(new, old).to_api(new.name.clone(), current)
    }

    #[test]
    fn changes_without_values() {
        let old = spec(
            "[app]\nname = \"a\"\n[env]\nKEEP = \"1\"\nGONE = \"x\"\nCHANGED = \"old-secretish\"\n[services.web]\ncommand = \"run\"\n[services.old]\ncommand = \"x\"\n[[routes]]\npath = \"/\"\nservice = \"web\"\n",
        );
        let new = spec(
            "[app]\nname = \"a\"\n[env]\nKEEP = \"1\"\nCHANGED = \"new-secretish\"\nADDED = \"y\"\n[services.web]\ncommand = \"run2\"\ninstances = 3\n[services.worker]\ncommand = \"w\"\n[[routes]]\npath = \"/api/\"\nservice = \"web\"\n",
        );
        let p = plan(&new, Some(&old), Some("r4".to_owned()));
        assert_eq!(p.services_added, ["worker"]);
        assert_eq!(p.services_removed, ["old"]);
        assert_eq!(
            p.services_changed,
            ["web: instances 1 -> 3", "web: command changed"]
        );
        assert_eq!(p.routes_added, ["*/api/ -> service web"]);
        assert_eq!(p.routes_removed, ["*/ -> service web"]);
        assert_eq!(p.env_changed, ["+ADDED", "~CHANGED", "-GONE"]);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("secretish"), "{json}");
    }

    #[test]
    fn tls_and_settings() {
        let base = "[app]\nname = \"a\"\n[services.web]\ncommand = \"run\"\n[[routes]]\nhost = \"a.example.com\"\nservice = \"web\"\n";
        let old = spec(base);
        let new = spec(&format!(
            "{base}[tls]\nacme = {{ email = \"ops@example.com\" }}\n[deploy]\nwatch = \"5s\"\n"
        ));
        let p = plan(&new, Some(&old), Some("r1".to_owned()));
        assert_eq!(
            p.settings_changed,
            ["tls: none -> acme (a.example.com)", "[deploy] changed"]
        );
        assert!(plan(&new, Some(&new), None).settings_changed.is_empty());
    }

    #[test]
    fn first_deploy_adds_everything() {
        let new = spec("[app]\nname = \"a\"\n[services.web]\ncommand = \"run\"\n");
        let p = plan(&new, None, None);
        assert_eq!(p.services_added, ["web"]);
        assert_eq!(p.instances, [("web".to_owned(), 1)]);
        assert_eq!(p.start, ["web.0"]);
        assert!(p.replace.is_empty() && p.stop.is_empty() && p.drain.is_empty());
    }

    #[test]
    fn routed_first_then_workers_one_by_one() {
        let old = spec(
            "[app]\nname = \"a\"\n[services.web]\ncommand = \"w\"\ninstances = 2\n[services.worker]\ncommand = \"q\"\ninstances = 2\n[services.cron]\ncommand = \"c\"\n[[routes]]\npath = \"/\"\nservice = \"web\"\n",
        );
        let new = spec(
            "[app]\nname = \"a\"\n[services.web]\ncommand = \"w\"\n[services.worker]\ncommand = \"q\"\n[[routes]]\npath = \"/\"\nservice = \"web\"\n",
        );
        let p = plan(&new, Some(&old), Some("r1".to_owned()));
        assert_eq!(p.start, ["web.0"]);
        assert_eq!(p.replace, ["worker.0"]);
        assert_eq!(p.stop, ["cron.0", "worker.1"]);
        assert_eq!(p.drain, ["web.0", "web.1"]);
    }
}
