//! Who owns what under the state directory, once apps have users of their own.
//!
//! ```text
//! STATE/                0711 root          traversable, not listable: the paths below are all
//!   state.db, secrets.key, certs/, logs/, tmp/, berth.sock   0600/0700 root: no app reads them
//!   apps/               0711 root
//!     APP/              0750 root:APP      another app's user cannot even look inside
//!       releases/ID/    root:APP, group r-x / r--: code is read-only to the app
//!       shared/ home/ tmp/   0700 APP       the app's own (BERTH_SHARED, HOME, TMPDIR and /tmp)
//! ```
//!
//! A release tree belongs to the app's user while its `[build]` runs, and is locked down
//! before anything starts. Every function here does blocking file IO: call it off the async
//! workers.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::Path;

use crate::paths::StateDir;
use crate::users::AppUser;

/// Create the app's directories with their owners and modes (and hand over a shared
/// directory left from before the app had its own user).
pub(crate) fn app_dirs(dir: &StateDir, app: &str, user: Option<&AppUser>) -> io::Result<()> {
    for path in [dir.app(app), dir.releases(app)] {
        std::fs::create_dir_all(&path)?;
        match user {
            Some(u) => set(&path, Some(0), Some(u.gid), 0o750)?,
            // Without isolation the daemon's own user runs the app; nothing to hand over.
            None => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?,
        }
    }
    for path in [dir.shared(app), dir.home(app), dir.app_tmp(app)] {
        std::fs::create_dir_all(&path)?;
        if let Some(u) = user {
            let meta = std::fs::metadata(&path)?;
            if meta.uid() != u.uid {
                own_tree(&path, u.uid, u.gid)?;
            }
            set(&path, Some(u.uid), Some(u.gid), 0o700)?;
        }
    }
    Ok(())
}

/// The whole tree, the app's user's: what its `[build]` needs to write.
pub(crate) fn for_build(tree: &Path, user: &AppUser) -> io::Result<()> {
    own_tree(tree, user.uid, user.gid)
}

/// The tree as the app runs it: owned by root, readable (and executable where the owner's
/// bit says so) by the app's group, nothing for others, nothing writable by the app. Cheap
/// to call again: a tree already locked is left as it is.
pub(crate) fn lock_down(tree: &Path, gid: u32) -> io::Result<()> {
    if is_locked(tree, gid) {
        return Ok(());
    }
    walk(tree, &mut |path, meta| {
        lchown(path, Some(0), Some(gid))?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let owner = meta.mode() & 0o700;
        let mode = if meta.is_dir() {
            0o750
        } else {
            // Group: read, and execute where the owner may execute.
            owner | 0o040 | ((owner & 0o100) >> 3)
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    })?;
    // Last: the mark that the tree is done.
    std::fs::set_permissions(tree, std::fs::Permissions::from_mode(0o750))
}

/// A locked tree's top directory is root:GID 0750; `lock_down` sets that last.
fn is_locked(tree: &Path, gid: u32) -> bool {
    std::fs::metadata(tree)
        .is_ok_and(|m| m.uid() == 0 && m.gid() == gid && m.mode() & 0o7777 == 0o750)
}

fn own_tree(tree: &Path, uid: u32, gid: u32) -> io::Result<()> {
    walk(tree, &mut |path, _| lchown(path, Some(uid), Some(gid)))
}

fn set(path: &Path, uid: Option<u32>, gid: Option<u32>, mode: u32) -> io::Result<()> {
    lchown(path, uid, gid)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Every entry under `root` (itself included, children before their directory is left),
/// without following symlinks.
fn walk(
    root: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(root)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(root)? {
            walk(&entry?.path(), f)?;
        }
    }
    f(root, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_tree_is_the_groups_to_read_and_nobodys_to_write() {
        if !nix::unistd::geteuid().is_root() {
            // chown needs root; the black-box isolation tests run as root in CI.
            assert!(lock_down(Path::new("/nonexistent-berth-tree"), 1).is_err());
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("r1");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::write(tree.join("app.py"), "x").unwrap();
        std::fs::write(tree.join("bin/run"), "x").unwrap();
        std::fs::set_permissions(tree.join("bin/run"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(tree.join("app.py"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        std::os::unix::fs::symlink("app.py", tree.join("link")).unwrap();
        lock_down(&tree, 4242).unwrap();
        let mode = |p: &str| std::fs::symlink_metadata(tree.join(p)).unwrap().mode() & 0o7777;
        let group = |p: &str| std::fs::symlink_metadata(tree.join(p)).unwrap().gid();
        assert_eq!(
            (mode(""), mode("bin"), mode("app.py"), mode("bin/run")),
            (0o750, 0o750, 0o640, 0o750)
        );
        assert_eq!(
            (group(""), group("app.py"), group("link")),
            (4242, 4242, 4242)
        );
        assert!(is_locked(&tree, 4242));
        assert!(!is_locked(&tree, 4243));
    }
}
