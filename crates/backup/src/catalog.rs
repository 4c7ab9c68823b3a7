//! What a storage target holds: the backups its manifests describe, listed and deleted, and
//! the sweep of what no manifest describes.

use crate::failure::{At, Failure, Stage};
use crate::manifest::Manifest;
use crate::storage::Storage;

/// Deletes a backup: the manifest first (from then on it is not a backup), then its object.
pub async fn delete(storage: &Storage, manifest: &Manifest) -> Result<(), Failure> {
    let key = Manifest::key(&manifest.name, &manifest.id);
    storage
        .delete(&key)
        .await
        .map_err(|e| Failure::new(Stage::Cleanup, storage.describe(&key, &e)))?;
    storage
        .delete(&manifest.object)
        .await
        .map_err(|e| Failure::new(Stage::Cleanup, storage.describe(&manifest.object, &e)))
}

/// The manifests of `name` in the storage, oldest first.
pub async fn list(storage: &Storage, name: &str) -> Result<Vec<Manifest>, Failure> {
    let keys = storage
        .list(name)
        .await
        .map_err(|e| Failure::new(Stage::Check, storage.describe(name, &e)))?;
    let mut out = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with(".json")) {
        let bytes = storage
            .get(key)
            .await
            .map_err(|e| Failure::new(Stage::Check, storage.describe(key, &e)))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::new(Stage::Check, format!("{}: {e}", storage.show(key))))?;
        out.push(manifest);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Removes what is not a backup under `name`: objects without a manifest (a backup that
/// failed and could not clean up, or was cut short by a crash) and unfinished uploads. Call it
/// with the definition's lock held, so no backup of it is in flight. Returns what was removed.
pub async fn sweep(storage: &Storage, name: &str) -> Result<Vec<String>, Failure> {
    let keys = storage.list(name).await.at(Stage::Cleanup)?;
    let id_of = |key: &str| {
        let file = key.rsplit('/').next().unwrap_or(key);
        file.split('.').next().unwrap_or(file).to_owned()
    };
    let with_manifest: std::collections::BTreeSet<String> = keys
        .iter()
        .filter(|k| k.ends_with(".json"))
        .map(|k| id_of(k))
        .collect();
    let mut removed = Vec::new();
    for key in keys.iter().filter(|k| !with_manifest.contains(&id_of(k))) {
        storage
            .delete(key)
            .await
            .map_err(|e| Failure::new(Stage::Cleanup, format!("{}: {e}", storage.show(key))))?;
        removed.push(key.clone());
    }
    let staged = storage.remove_staging(name);
    if staged > 0 {
        removed.push(format!("{staged} unfinished upload file(s)"));
    }
    Ok(removed)
}
