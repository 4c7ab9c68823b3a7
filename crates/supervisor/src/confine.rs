//! What a child may do once it runs: its user, its privileges, its `/tmp`, its limits, its
//! cgroup. [`Confinement`] is data the caller fills in; [`Confinement::apply`] is the part of
//! `pre_exec` that carries it out, in the forked child, before `exec`.
//!
//! The order matters and is fixed here:
//! 1. join the cgroup (`0` written to its `cgroup.procs`: before exec, so nothing the app forks
//!    escapes it);
//! 2. a private mount namespace with the app's own directory bound over `/tmp` (needs root, so
//!    before the switch);
//! 3. resource limits (`RLIMIT_NOFILE`, `RLIMIT_NPROC`, `RLIMIT_CORE`, `RLIMIT_AS`);
//! 4. the user: supplementary groups, then gid, then uid (never back to 0);
//! 5. `PR_SET_NO_NEW_PRIVS`, and the umask.
//!
//! `PR_SET_PDEATHSIG` is set by the caller *after* this: the kernel clears it when the
//! credentials change.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A user and group to run as; never uid 0 (see [`RunAs::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `None` for uid 0: no child of berth is ever switched *to* root.
    pub fn new(uid: u32, gid: u32) -> Option<RunAs> {
        (uid != 0).then_some(RunAs { uid, gid })
    }

    pub fn uid(self) -> u32 {
        self.uid
    }

    pub fn gid(self) -> u32 {
        self.gid
    }
}

/// Resource limits set in the child (soft = hard). `None` leaves the daemon's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`: open files.
    pub open_files: Option<u64>,
    /// `RLIMIT_NPROC`: processes and threads of the child's user, all of them.
    pub processes: Option<u64>,
    /// `RLIMIT_CORE`: 0 turns core dumps off (secrets live in the app's memory).
    pub core: Option<u64>,
    /// `RLIMIT_AS`: address space, the fallback for `memory_max` without a cgroup.
    pub address_space: Option<u64>,
}

impl Rlimits {
    /// The limits, each at most the daemon's own hard limit: raising a hard limit needs
    /// `CAP_SYS_RESOURCE`, which a daemon in a container may not have, and a lower limit is
    /// still a limit.
    fn within_hard_limits(self) -> Rlimits {
        use nix::sys::resource::{Resource, getrlimit};
        let clamp = |value: Option<u64>, resource| {
            value.map(|v| match getrlimit(resource) {
                Ok((_, hard)) => v.min(hard),
                Err(_) => v,
            })
        };
        Rlimits {
            open_files: clamp(self.open_files, Resource::RLIMIT_NOFILE),
            processes: clamp(self.processes, Resource::RLIMIT_NPROC),
            core: clamp(self.core, Resource::RLIMIT_CORE),
            address_space: clamp(self.address_space, Resource::RLIMIT_AS),
        }
    }
}

/// How a child is confined. The default is the daemon's own user with nothing more.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    pub run_as: Option<RunAs>,
    /// `PR_SET_NO_NEW_PRIVS`: no setuid binary or file capability raises the child's rights.
    pub no_new_privs: bool,
    /// Bound over `/tmp` in a private mount namespace (needs the daemon to be root; see
    /// [`private_tmp_works`]).
    pub private_tmp: Option<std::path::PathBuf>,
    pub limits: Rlimits,
    /// The child's umask (`0o027`: what it creates is not for others).
    pub umask: Option<u32>,
    /// A cgroup directory (v2) the child joins before exec.
    pub cgroup: Option<std::path::PathBuf>,
}

/// [`Confinement`] with its paths as C strings, made before `fork` (nothing may allocate in
/// the child).
pub(crate) struct Prepared {
    run_as: Option<RunAs>,
    no_new_privs: bool,
    private_tmp: Option<CString>,
    limits: Rlimits,
    umask: Option<u32>,
    cgroup_procs: Option<CString>,
}

impl Confinement {
    pub(crate) fn prepare(&self) -> io::Result<Prepared> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
        };
        Ok(Prepared {
            run_as: self.run_as,
            no_new_privs: self.no_new_privs,
            private_tmp: self.private_tmp.as_deref().map(c).transpose()?,
            limits: self.limits.within_hard_limits(),
            umask: self.umask,
            cgroup_procs: self
                .cgroup
                .as_deref()
                .map(|d| c(&d.join("cgroup.procs")))
                .transpose()?,
        })
    }
}

impl Prepared {
    /// In the forked child: steps 1–5 of the module doc. Only async-signal-safe calls, no
    /// allocation.
    #[allow(unsafe_code)]
    pub(crate) fn apply(&self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        // SAFETY: plain syscalls on C strings made before fork and on stack values; nothing
        // here allocates or takes a lock.
        unsafe {
            if let Some(procs) = &self.cgroup_procs {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return fail();
                }
                let wrote = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if wrote != 1 {
                    return fail();
                }
            }
            if let Some(tmp) = &self.private_tmp {
                if libc::unshare(libc::CLONE_NEWNS) < 0 {
                    return fail();
                }
                // Nothing mounted here may propagate back to the host's namespace.
                let root = c"/";
                let flags = libc::MS_REC | libc::MS_PRIVATE;
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) < 0
                {
                    return fail();
                }
                let bind = libc::MS_BIND | libc::MS_REC;
                if libc::mount(
                    tmp.as_ptr(),
                    c"/tmp".as_ptr(),
                    std::ptr::null(),
                    bind,
                    std::ptr::null(),
                ) < 0
                {
                    return fail();
                }
            }
            let limits = [
                (libc::RLIMIT_NOFILE, self.limits.open_files),
                (libc::RLIMIT_NPROC, self.limits.processes),
                (libc::RLIMIT_CORE, self.limits.core),
                (libc::RLIMIT_AS, self.limits.address_space),
            ];
            for (resource, value) in limits {
                if let Some(v) = value {
                    let lim = libc::rlimit {
                        rlim_cur: v as libc::rlim_t,
                        rlim_max: v as libc::rlim_t,
                    };
                    if libc::setrlimit(resource, &lim) < 0 {
                        return fail();
                    }
                }
            }
            if let Some(who) = self.run_as {
                let groups = [who.gid as libc::gid_t];
                if libc::setgroups(1, groups.as_ptr()) < 0
                    || libc::setgid(who.gid) < 0
                    || libc::setuid(who.uid) < 0
                {
                    return fail();
                }
                // setuid from root drops every capability; make sure it cannot be undone.
                if libc::setuid(0) == 0 {
                    libc::_exit(126);
                }
            }
            if self.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return fail();
            }
            if let Some(mask) = self.umask {
                libc::umask(mask as libc::mode_t);
            }
        }
        Ok(())
    }
}
