//! A started release: its spec, its tree, its environment and one [`Member`] per instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use api::ReleaseStatus;
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

/// The release `berth rollback APP` goes back to: the newest release that served, older than
/// the current one. `releases` are newest first.
pub(crate) fn previous<'a>(
    releases: &'a [store::Release],
    current: Option<&str>,
) -> Option<&'a store::Release> {
    let cur_pos = releases.iter().position(|r| Some(r.id.as_str()) == current);
    releases
        .iter()
        .skip(cur_pos.map_or(0, |p| p + 1))
        .find(|r| r.status == ReleaseStatus::Live)
}

/// The releases whose trees a prune deletes: every failed one, and the releases that served
/// beyond the newest `keep` of them (never the current one). `releases` are newest first.
pub(crate) fn to_prune<'a>(
    releases: &'a [store::Release],
    current: Option<&str>,
    keep: usize,
) -> Vec<&'a str> {
    let mut served = 0;
    releases
        .iter()
        .filter(|r| match r.status {
            ReleaseStatus::Failed => Some(r.id.as_str()) != current,
            ReleaseStatus::Live => {
                served += 1;
                served > keep && Some(r.id.as_str()) != current
            }
            ReleaseStatus::Pending | ReleaseStatus::Pruned => false,
        })
        .map(|r| r.id.as_str())
        .collect()
}

/// What each release is to the app now, for `berth releases`.
pub(crate) fn state_of(
    r: &store::Release,
    current: Option<&str>,
    previous: Option<&str>,
) -> api::ReleaseState {
    use api::ReleaseState as S;
    match r.status {
        _ if Some(r.id.as_str()) == current => S::Live,
        _ if Some(r.id.as_str()) == previous => S::Previous,
        ReleaseStatus::Live => S::Kept,
        ReleaseStatus::Pending => S::Pending,
        ReleaseStatus::Failed => S::Failed,
        ReleaseStatus::Pruned => S::Pruned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn failed_releases_go_first_and_the_newest_good_ones_stay() {
        use ReleaseStatus::*;
        // r1 ok, r2 failed, r3 ok, r4 failed, r5 ok (current): keep 2.
        let list = releases(&[
            ("r5", Live),
            ("r4", Failed),
            ("r3", Live),
            ("r2", Failed),
            ("r1", Live),
        ]);
        assert_eq!(to_prune(&list, Some("r5"), 2), ["r4", "r2", "r1"]);
        assert_eq!(previous(&list, Some("r5")).unwrap().id, "r3");
        // After a rollback to r1, r1 is current: it stays whatever its age.
        assert_eq!(to_prune(&list, Some("r1"), 1), ["r4", "r3", "r2"]);
        assert_eq!(previous(&list, Some("r1")).map(|r| &r.id), None);
    }

    #[test]
    fn states() {
        use ReleaseStatus::*;
        use api::ReleaseState as S;
        let list = releases(&[
            ("r4", Pending),
            ("r3", Live),
            ("r2", Live),
            ("r1", Live),
            ("r0", Pruned),
        ]);
        let shown: Vec<S> = list
            .iter()
            .map(|r| state_of(r, Some("r3"), Some("r2")))
            .collect();
        assert_eq!(
            shown,
            [S::Pending, S::Live, S::Previous, S::Kept, S::Pruned]
        );
    }
}
