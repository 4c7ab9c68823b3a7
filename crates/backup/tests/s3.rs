//! Backups to an S3-compatible store (moto's server): a multipart round trip, drilled and
//! restored; and the store going away in the middle of an upload.

#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use backup::{Job, Location, Manifest, S3Settings, Source, Stage, Tools};
use testkit::S3;

const BUCKET: &str = "berth-backups";

mod common;

use common::{Scratch as Setup, random_bytes};

fn setup() -> Setup {
    Setup::new(&["uploads"])
}

impl Setup {
    /// A job backing up `uploads/` to `s3://BUCKET/shop`.
    fn job(&self, s3: &S3) -> Job {
        let location = Location::S3 {
            bucket: BUCKET.into(),
            prefix: "shop".into(),
            settings: S3Settings {
                endpoint: Some(s3.endpoint()),
                region: Some(s3.region().into()),
                access_key_id: s3.access_key().into(),
                secret_access_key: s3.secret_key().into(),
                path_style: None,
            },
        };
        self.job_to(
            "files",
            Source::Dir(self.uploads()),
            location,
            Tools::default(),
        )
    }

    fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `uploads/NAME`: `mib` MiB of random (incompressible) bytes.
    fn random_file(&self, name: &str, mib: usize) -> Vec<u8> {
        let bytes = random_bytes(mib << 20);
        std::fs::write(self.uploads().join(name), &bytes).unwrap();
        bytes
    }
}

fn started_s3() -> S3 {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    s3
}

/// The paths under `dir` and their contents.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(contents(&e.path()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_backup_round_trips_through_s3() {
    let s3 = started_s3();
    let s = setup();
    // ~20 MiB stored: three 8 MiB parts.
    s.random_file("a.bin", 12);
    std::fs::create_dir_all(s.uploads().join("sub")).unwrap();
    s.random_file("sub/b.bin", 8);
    std::fs::write(s.uploads().join("sub/note.txt"), "hello").unwrap();
    let before = contents(&s.uploads());
    let job = s.job(&s3);

    let id = backup::new_id(SystemTime::now());
    let manifest = backup::backup(&job, &id, s.keys.recipient(), Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(manifest.files, Some(3));
    assert!(manifest.stored_bytes > 20 << 20, "{manifest:?}");
    let mut expected = vec![
        format!("shop/{}", manifest.object),
        format!("shop/{}", Manifest::key("files", &id)),
    ];
    expected.sort();
    assert!(expected.iter().all(|k| k.starts_with("shop/files/")));
    assert_eq!(s3.list(BUCKET), expected, "the object and its manifest");
    assert!(
        s3.log().contains("partNumber=3"),
        "a multipart upload of three parts:\n{}",
        s3.log()
    );
    assert_eq!(
        backup::list(&job.storage, "files").await.unwrap(),
        std::slice::from_ref(&manifest)
    );

    let identity = s.keys.identity().unwrap();
    let receipt = backup::drill(&job, &manifest, identity).await;
    assert!(receipt.ok, "{receipt:?}");
    assert_eq!(std::fs::read_dir(&job.work_dir).unwrap().count(), 0);

    std::fs::remove_file(s.uploads().join("a.bin")).unwrap();
    std::fs::write(s.uploads().join("sub/note.txt"), "changed").unwrap();
    backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap();
    backup::restore(&job, &manifest, identity).await.unwrap();
    assert!(contents(&s.uploads()) == before, "the tree as it was");
    assert!(!s.root.join(".uploads.berth-restore").exists());
    assert!(!s.root.join(".uploads.berth-old").exists());

    backup::delete(&job.storage, &manifest).await.unwrap();
    assert_eq!(s3.list(BUCKET), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_going_away_during_the_upload_fails_the_backup_in_bounded_time() {
    let s3 = Arc::new(Mutex::new(started_s3()));
    let s = setup();
    s.random_file("a.bin", 20);
    s.random_file("b.bin", 20);
    let job = s.job(&s3.lock().unwrap());

    // The progress callback runs on the sealing thread: it stops the server once 6 MiB have
    // been read, while the first parts are on their way.
    let stopped = Arc::new(Mutex::new(None));
    let progress = {
        let (s3, stopped) = (s3.clone(), stopped.clone());
        Arc::new(move |bytes: u64| {
            let mut stopped = stopped.lock().unwrap();
            if bytes >= 6 << 20 && stopped.is_none() {
                s3.lock().unwrap().stop();
                *stopped = Some(Instant::now());
            }
        })
    };
    let id = backup::new_id(SystemTime::now());
    let err = backup::backup(&job, &id, s.keys.recipient(), progress)
        .await
        .unwrap_err();
    let stopped = stopped.lock().unwrap().expect("the server was stopped");
    assert!(
        stopped.elapsed() < Duration::from_secs(60),
        "failed {:?} after the server went away",
        stopped.elapsed()
    );
    assert_eq!(err.stage, Stage::Upload, "{err}");
    assert!(
        err.message
            .starts_with(&format!("s3://{BUCKET}/shop/files/{id}.tar.zst.age: ")),
        "{err}"
    );
    // The cause says the connection went: refused for a request sent after the stop, cut
    // short for one the server was answering when it stopped.
    assert!(
        [
            "Connection refused",
            "end of file before message",
            "Connection reset"
        ]
        .iter()
        .any(|cause| err.message.contains(cause)),
        "the cause: {err}"
    );
}
