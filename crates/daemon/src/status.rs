//! What the read endpoints answer: status, releases and history, as the API's types.

use std::time::SystemTime;

use anyhow::Result;

use crate::core::Core;
use crate::release::{HISTORY, Lineage, Member};

impl Core {
    pub async fn status(&self, only: Option<&str>) -> Result<api::Status> {
        let known = self.db.apps().await?;
        let now = SystemTime::now();
        let shown = |name: &str| only.is_none_or(|o| o == name);
        let apps = {
            let state = self.apps();
            known
                .into_iter()
                .filter(|a| shown(&a.name))
                .map(|a| {
                    let here = state.get(&a.name);
                    api::AppStatus {
                        instances: here
                            .and_then(|s| s.running.as_ref())
                            .map(|r| {
                                r.members
                                    .iter()
                                    .map(|m| instance_status(m, &r.id, now))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        deploying: here.and_then(|s| s.deploying.clone()),
                        user: here
                            .and_then(|s| s.running.as_ref())
                            .and_then(|r| r.user.as_ref())
                            .map(|u| u.name.clone()),
                        draining: here
                            .map(|s| {
                                s.draining
                                    .iter()
                                    .map(|(release, instances, until)| api::Draining {
                                        release: release.clone(),
                                        instances: *instances,
                                        until: supervisor::logs::format_time(*until),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        standby: here.and_then(|s| s.standby.as_ref()).map(|s| {
                            let instances: Vec<api::InstanceStatus> = s
                                .release
                                .members
                                .iter()
                                .map(|m| instance_status(m, &s.release.id, now))
                                .collect();
                            api::Standby {
                                release: s.release.id.clone(),
                                memory_bytes: instances.iter().filter_map(|i| i.memory_bytes).sum(),
                                instances,
                                until: supervisor::logs::format_time(s.until),
                            }
                        }),
                        canary: here.and_then(|s| s.canary.as_ref()).map(|c| api::Canary {
                            release: c.release.id.clone(),
                            percent: c.share.fraction() * 100.0,
                            step: c.step,
                            steps: c.steps,
                        }),
                        maintenance: here.and_then(crate::maintenance::describe),
                        backups: Vec::new(),
                        notifiers: Vec::new(),
                        release: a.current_release,
                        name: a.name,
                    }
                })
                .collect::<Vec<_>>()
        };
        let mut apps = apps;
        for a in &mut apps {
            let rows = self.backup_rows(&a.name, None).await;
            a.backups = self.backup_definitions(&a.name, &rows).await;
            a.notifiers = self.notifier_status(&a.name);
        }
        Ok(api::Status {
            daemon: self.info(),
            apps,
            certificates: self.certs.status(shown),
        })
    }

    /// The releases of `app`, newest first; `None` for an app berth does not know.
    pub async fn releases(&self, app: &str) -> Result<Option<api::Releases>> {
        let (known, list) = self.db.app_releases(app).await?;
        let Some(known) = known else { return Ok(None) };
        let current = known.current_release;
        let deploys = self.db.deploys(Some(app), HISTORY).await?;
        let lineage = Lineage::new(&deploys, current.as_deref());
        let previous = lineage.previous(&list).map(|r| r.id.clone());
        Ok(Some(api::Releases {
            app: app.to_owned(),
            releases: list
                .iter()
                .map(|r| api::ReleaseInfo {
                    live: Some(&r.id) == current.as_ref(),
                    created: supervisor::logs::format_time(r.created_at),
                    digest: r.digest.clone(),
                    status: lineage.state_of(r, previous.as_deref()),
                    id: r.id.clone(),
                })
                .collect(),
            current,
        }))
    }

    pub async fn history(&self, app: Option<&str>) -> Result<api::History> {
        let deploys = self.db.deploys(app, 10_000).await?;
        let only = app.map(str::to_owned);
        let events = self
            .db
            .call(move |s| s.events(only.as_deref(), 200))
            .await?;
        Ok(api::History {
            events: events
                .into_iter()
                .map(|(at, app, kind, detail)| api::EventRecord {
                    at: supervisor::logs::format_time(at),
                    app,
                    kind,
                    detail,
                })
                .collect(),
            summary: crate::history::summarize(&deploys, SystemTime::now()),
            deploys: deploys.iter().map(crate::history::record).collect(),
        })
    }
}

fn instance_status(m: &Member, release: &str, now: SystemTime) -> api::InstanceStatus {
    let st = m.instance.status();
    api::InstanceStatus {
        service: m.service.clone(),
        instance: m.index,
        release: release.to_owned(),
        pid: st.pid,
        port: m.instance.port(),
        state: st.state.to_string(),
        restarts: st.restarts,
        uptime_secs: st
            .started_at
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs()),
        memory_bytes: st.memory_rss,
        crash_loop: st.crash_loop,
        limits: st
            .limits
            .iter()
            .map(|l| api::LimitStatus {
                name: l.name.to_owned(),
                value: shown_limit(l.name, &l.value),
                enforced_by: l.enforced_by.to_string(),
            })
            .collect(),
        warnings: st.warnings.clone(),
    }
}

/// A limit as berth.toml writes it: `128M`, `50%`, `256`.
fn shown_limit(name: &str, value: &str) -> String {
    match (name, value.parse::<f64>()) {
        ("memory_max", Ok(bytes)) => {
            let mib = bytes / f64::from(1u32 << 20);
            if mib >= 1024.0 && (mib / 1024.0).fract() == 0.0 {
                format!("{}G", mib / 1024.0)
            } else {
                format!("{mib}M")
            }
        }
        ("cpu_max", Ok(cpus)) => format!("{}%", (cpus * 100.0).round()),
        _ => value.to_owned(),
    }
}
