//! A started release: its spec, its tree, its environment and one [`Member`] per instance.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use api::{DeployKind, DeployResult, ReleaseStatus};
use proxy::Upstream;
use spec::AppSpec;
use supervisor::Instance;

use crate::users::AppUser;

pub(crate) struct Release {
    pub id: String,
    pub spec: Arc<AppSpec>,
    pub dir: PathBuf,
    /// The processes' environment (secrets included): never printed.
    pub env: Arc<BTreeMap<String, String>>,
    /// Who its processes run as (`None`: the daemon's own user, isolation off).
    pub user: Option<AppUser>,
    pub members: Vec<Member>,
}

/// One instance of a service, and the proxy's handle on it.
pub(crate) struct Member {
    pub service: String,
    pub index: u32,
    pub instance: Instance,
    pub upstream: Arc<Upstream>,
}

/// A replaced release kept running out of the route table (`[deploy] standby`), so that a
/// rollback to it is a route swap.
pub(crate) struct Standby {
    pub release: Release,
    /// When it is drained and stopped.
    pub until: std::time::SystemTime,
    /// The `deploys` row that replaced it (its drain is recorded there).
    pub deploy: i64,
    /// `[deploy] drain` of the release that replaced it: its in-flight requests and WebSockets
    /// get this long when the standby ends.
    pub grace: std::time::Duration,
}

/// A canary step: the new release and the share of clients it gets; the running release
/// keeps the rest. Nothing is committed in the store until the last step, the switch.
pub(crate) struct Canary {
    pub release: Release,
    pub share: proxy::Share,
    /// This step (1-based) out of `steps`, the switch included.
    pub step: u32,
    pub steps: u32,
}

/// An instance of a service: `("web", 0)`.
pub(crate) type Slot = (String, u32);

impl Release {
    /// A release with no instances yet.
    pub fn new(
        id: &str,
        spec: Arc<AppSpec>,
        dir: &Path,
        env: BTreeMap<String, String>,
        user: Option<AppUser>,
    ) -> Release {
        Release {
            id: id.to_owned(),
            spec,
            dir: dir.to_owned(),
            env: Arc::new(env),
            user,
            members: Vec::new(),
        }
    }

    /// The same release with no instances: what more of its instances are started from.
    pub fn like(&self) -> Release {
        Release {
            id: self.id.clone(),
            spec: self.spec.clone(),
            dir: self.dir.clone(),
            env: self.env.clone(),
            user: self.user.clone(),
            members: Vec::new(),
        }
    }
}

impl Member {
    pub fn slot(&self) -> Slot {
        (self.service.clone(), self.index)
    }
}

/// Every instance `spec` asks for.
pub(crate) fn all_slots(spec: &AppSpec) -> Vec<Slot> {
    spec.services
        .iter()
        .flat_map(|(name, s)| (0..s.instances).map(move |i| (name.clone(), i)))
        .collect()
}

/// Read and validate `DIR/berth.toml` for `env` (daemon side: never trust the client's check).
pub(crate) fn load_spec(dir: &Path, env: Option<&str>) -> Result<AppSpec> {
    let path = dir.join("berth.toml");
    let source =
        std::fs::read_to_string(&path).context("the uploaded app has no readable berth.toml")?;
    spec::parse_env("berth.toml", &source, env)
        .map_err(|d| anyhow::anyhow!("berth.toml is invalid:\n{d}"))
}

/// The environment an app instance runs in: `shop.staging` → `staging`.
pub(crate) fn environment_of(app: &str) -> Option<&str> {
    app.split_once('.').map(|(_, env)| env)
}

/// The deploy records read to tell which release served before which.
pub(crate) const HISTORY: u32 = 10_000;

/// What the deploy history says about an app's releases: the order they last served in, and
/// which were rolled back from. Only finished rollouts with result ok count: each one put
/// `release` live and took `from_release` out of service.
pub(crate) struct Lineage {
    /// The releases that served, the one that served last first (the current one, if known).
    served: Vec<String>,
    /// Releases whose latest time out of service was a rollback away from them.
    rolled_back: BTreeSet<String>,
    current: Option<String>,
}

impl Lineage {
    /// `deploys` may be in any order; `current` is the app's live release.
    pub fn new(deploys: &[store::Deploy], current: Option<&str>) -> Lineage {
        let mut ok: Vec<&store::Deploy> = deploys
            .iter()
            .filter(|d| d.result == DeployResult::Ok)
            .collect();
        ok.sort_by_key(|d| std::cmp::Reverse(d.id));
        let mut served: Vec<String> = current.map(str::to_owned).into_iter().collect();
        let mut rolled_back = BTreeSet::new();
        for d in ok {
            for id in [Some(&d.release), d.from_release.as_ref()]
                .into_iter()
                .flatten()
            {
                if !served.contains(id) {
                    served.push(id.clone());
                    // The newest exit of `id` decides: a release rolled back from, then made
                    // live again and replaced by a deploy, is clean again.
                    if Some(id) == d.from_release.as_ref() && d.kind == DeployKind::Rollback {
                        rolled_back.insert(id.clone());
                    }
                }
            }
        }
        Lineage {
            served,
            rolled_back,
            current: current.map(str::to_owned),
        }
    }

    /// The release `berth rollback APP` goes back to: the one that served before the current
    /// one took over, skipping releases rolled back from and those no longer kept. Rolling back
    /// twice goes further back, never forth again. `releases` are the app's, in any order.
    pub fn previous<'a>(&self, releases: &'a [store::Release]) -> Option<&'a store::Release> {
        self.served
            .iter()
            .filter(|id| Some(*id) != self.current.as_ref() && !self.rolled_back.contains(*id))
            .find_map(|id| {
                releases
                    .iter()
                    .find(|r| &r.id == id && r.status == ReleaseStatus::Live)
            })
    }

    /// The releases whose trees a prune deletes: every failed one, and the releases that
    /// served beyond the `keep` that served last (never the current one, nor the rollback
    /// target). `releases` are newest first.
    pub fn to_prune<'a>(&self, releases: &'a [store::Release], keep: usize) -> Vec<&'a str> {
        let previous = self.previous(releases).map(|r| r.id.as_str());
        // Releases that served in the order they last did; any the history does not name
        // (records pruned from it) after them, newest first.
        let mut by_service: Vec<&store::Release> = self
            .served
            .iter()
            .filter_map(|id| releases.iter().find(|r| &r.id == id))
            .collect();
        by_service.extend(releases.iter().filter(|r| !self.served.contains(&r.id)));
        let mut served = 0;
        let doomed: BTreeSet<&str> = by_service
            .into_iter()
            .filter(|r| {
                let spared = Some(r.id.as_str()) == self.current.as_deref()
                    || Some(r.id.as_str()) == previous;
                match r.status {
                    ReleaseStatus::Failed => !spared,
                    ReleaseStatus::Live => {
                        served += 1;
                        served > keep && !spared
                    }
                    ReleaseStatus::Pending | ReleaseStatus::Pruned => false,
                }
            })
            .map(|r| r.id.as_str())
            .collect();
        releases
            .iter()
            .map(|r| r.id.as_str())
            .filter(|id| doomed.contains(id))
            .collect()
    }

    /// What `r` is to the app now, for `berth releases`.
    pub fn state_of(&self, r: &store::Release, previous: Option<&str>) -> api::ReleaseState {
        use api::ReleaseState as S;
        match r.status {
            _ if Some(&r.id) == self.current.as_ref() => S::Live,
            _ if Some(r.id.as_str()) == previous => S::Previous,
            ReleaseStatus::Live if self.rolled_back.contains(&r.id) => S::RolledBack,
            ReleaseStatus::Live => S::Kept,
            ReleaseStatus::Pending => S::Pending,
            ReleaseStatus::Failed => S::Failed,
            ReleaseStatus::Pruned => S::Pruned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseStatus::*;
    use api::ReleaseState as S;

    fn releases(list: &[(&str, ReleaseStatus)]) -> Vec<store::Release> {
        list.iter()
            .map(|(id, status)| store::Release {
                app: "shop".into(),
                id: (*id).into(),
                created_at: std::time::UNIX_EPOCH,
                digest: String::new(),
                status: *status,
            })
            .collect()
    }

    /// Rollouts in order: `("deploy", "r3", Some("r1"), "ok")`.
    fn history(list: &[(&str, &str, Option<&str>, &str)]) -> Vec<store::Deploy> {
        list.iter()
            .enumerate()
            .map(|(i, (kind, release, from, result))| store::Deploy {
                id: i as i64 + 1,
                kind: kind.parse().unwrap(),
                app: "shop".into(),
                release: (*release).into(),
                from_release: from.map(str::to_owned),
                user: "ops".into(),
                started_at: std::time::UNIX_EPOCH,
                switched_at: None,
                finished_at: None,
                drained_at: None,
                step: api::Step::Done,
                result: result.parse().unwrap(),
                gate: None,
                reason: None,
            })
            .collect()
    }

    /// The rollback target and every release's state, newest release first.
    fn check(
        list: &[store::Release],
        deploys: &[store::Deploy],
        current: &str,
        target: Option<&str>,
        states: &[S],
    ) {
        let lineage = Lineage::new(deploys, Some(current));
        let previous = lineage.previous(list).map(|r| r.id.as_str());
        assert_eq!(previous, target);
        let shown: Vec<S> = list.iter().map(|r| lineage.state_of(r, previous)).collect();
        assert_eq!(shown, states);
    }

    #[test]
    fn rollback_goes_back_to_what_served_before_not_to_the_newest_older_id() {
        // r1 -> r3, rollback to r1, deploy r4: back means r1, not r3.
        let list = releases(&[("r4", Live), ("r3", Live), ("r2", Failed), ("r1", Live)]);
        let mut deploys = history(&[
            ("deploy", "r1", None, "ok"),
            ("deploy", "r2", Some("r1"), "failed"),
            ("deploy", "r3", Some("r1"), "ok"),
            ("rollback", "r1", Some("r3"), "ok"),
            ("deploy", "r4", Some("r1"), "ok"),
        ]);
        check(
            &list,
            &deploys,
            "r4",
            Some("r1"),
            &[S::Live, S::RolledBack, S::Failed, S::Previous],
        );
        // Back to r1: a second plain rollback goes further back, never forth to r4 or r3.
        deploys.extend(
            history(&[("rollback", "r1", Some("r4"), "ok")])
                .into_iter()
                .map(|mut d| {
                    d.id = 6;
                    d
                }),
        );
        check(
            &list,
            &deploys,
            "r1",
            None,
            &[S::RolledBack, S::RolledBack, S::Failed, S::Live],
        );
    }

    #[test]
    fn a_release_made_live_again_and_replaced_by_a_deploy_is_clean_again() {
        let list = releases(&[("r3", Live), ("r2", Live), ("r1", Live)]);
        let deploys = history(&[
            ("deploy", "r1", None, "ok"),
            ("deploy", "r2", Some("r1"), "ok"),
            ("rollback", "r1", Some("r2"), "ok"),
            ("rollback", "r2", Some("r1"), "ok"), // --to r2: it was fine after all
            ("deploy", "r3", Some("r2"), "ok"),
        ]);
        // r1 was last taken out by a rollback (to r2); r2 by a deploy.
        check(
            &list,
            &deploys,
            "r3",
            Some("r2"),
            &[S::Live, S::Previous, S::RolledBack],
        );
    }

    #[test]
    fn failed_and_rolled_back_rollouts_change_nothing_and_pruned_releases_are_skipped() {
        let list = releases(&[("r4", Failed), ("r3", Failed), ("r2", Pruned), ("r1", Live)]);
        let deploys = history(&[
            ("deploy", "r1", None, "ok"),
            ("deploy", "r2", Some("r1"), "ok"),
            ("rollback", "r1", Some("r2"), "ok"),
            ("deploy", "r3", Some("r1"), "rolled-back"),
            ("deploy", "r4", Some("r1"), "failed"),
        ]);
        check(
            &list,
            &deploys,
            "r1",
            None,
            &[S::Failed, S::Failed, S::Pruned, S::Live],
        );
        // A deploy after them: back is r1.
        let list = releases(&[
            ("r5", Live),
            ("r4", Failed),
            ("r3", Failed),
            ("r2", Pruned),
            ("r1", Live),
        ]);
        let mut more = deploys.clone();
        more.push(store::Deploy {
            id: 6,
            release: "r5".into(),
            from_release: Some("r1".into()),
            result: DeployResult::Ok,
            ..deploys[0].clone()
        });
        check(
            &list,
            &more,
            "r5",
            Some("r1"),
            &[S::Live, S::Failed, S::Failed, S::Pruned, S::Previous],
        );
    }

    #[test]
    fn failed_releases_go_first_and_the_ones_that_served_last_stay() {
        // r1 ok, r2 failed, r3 ok, r4 failed, r5 ok (current): keep 2.
        let list = releases(&[
            ("r5", Live),
            ("r4", Failed),
            ("r3", Live),
            ("r2", Failed),
            ("r1", Live),
        ]);
        let deploys = history(&[
            ("deploy", "r1", None, "ok"),
            ("deploy", "r2", Some("r1"), "failed"),
            ("deploy", "r3", Some("r1"), "ok"),
            ("deploy", "r4", Some("r3"), "rolled-back"),
            ("deploy", "r5", Some("r3"), "ok"),
        ]);
        let lineage = Lineage::new(&deploys, Some("r5"));
        assert_eq!(lineage.to_prune(&list, 2), ["r4", "r2", "r1"]);
        assert_eq!(lineage.previous(&list).unwrap().id, "r3");
        // After a rollback to r3 and a deploy r6 from it, keep 1: r6 and its rollback target r3
        // stay; r5, rolled back from, goes.
        let mut deploys = deploys;
        deploys.extend(
            history(&[
                ("rollback", "r3", Some("r5"), "ok"),
                ("deploy", "r6", Some("r3"), "ok"),
            ])
            .into_iter()
            .map(|mut d| {
                d.id += 5;
                d
            }),
        );
        let mut list = list;
        list.insert(0, releases(&[("r6", Live)]).remove(0));
        let lineage = Lineage::new(&deploys, Some("r6"));
        assert_eq!(lineage.to_prune(&list, 1), ["r5", "r4", "r2", "r1"]);
        // Keep 3: the ones that served last are r6, r3, r5 — not r5, r3 by id.
        let lineage = Lineage::new(&deploys, Some("r6"));
        assert_eq!(lineage.to_prune(&list, 3), ["r4", "r2", "r1"]);
    }

    #[test]
    fn an_app_with_no_history_rolls_back_nowhere() {
        let list = releases(&[("r1", Pending)]);
        check(&list, &[], "r1", None, &[S::Live]);
    }
}
