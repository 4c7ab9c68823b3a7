//! A started release: its spec, its tree, its environment and one [`Member`] per instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use proxy::Upstream;
use spec::AppSpec;
use supervisor::Instance;

pub(crate) struct Release {
    pub id: String,
    pub spec: Arc<AppSpec>,
    pub dir: PathBuf,
    /// The processes' environment (secrets included): never printed.
    pub env: Arc<BTreeMap<String, String>>,
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
    pub fn new(id: &str, spec: Arc<AppSpec>, dir: &Path, env: BTreeMap<String, String>) -> Release {
        Release {
            id: id.to_owned(),
            spec,
            dir: dir.to_owned(),
            env: Arc::new(env),
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
