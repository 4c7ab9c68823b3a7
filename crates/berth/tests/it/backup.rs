//! `berth backup` through the real CLI: a mistake in berth.toml caught by `berth check`, a run
//! with its summary, the list as JSON, a restore's dry run and its refusal without a terminal,
//! the key exported, taken offline and given back with `--identity`.

use serde_json::Value;

use crate::harness::*;

fn files_app(extra: &str) -> tempfile::TempDir {
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"files\"\n\
                 [services.web]\ncommand = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
                 [[routes]]\npath = \"/\"\nservice = \"web\"\n\
                 [backups.uploads]\ndir = \"uploads\"\nverify = \"off\"\n{extra}"
            ),
        ),
        ("index.html", "hi"),
    ])
}

#[test]
fn check_names_the_line_of_a_bad_backup() {
    let d = Daemon::start();
    let app = files_app("schedule = \"0 25 * * *\"\n");
    let run = d.berth(&["check", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("berth.toml:11:15"), "{run:?}");
    assert!(run.stderr.contains("hour"), "{run:?}");
}

#[test]
fn run_list_restore_dry_run_and_an_offline_key() {
    let d = Daemon::start();
    let app = files_app("");
    let run = d.berth(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let uploads = d.path().join("apps/files/shared/uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::write(uploads.join("cat.jpg"), vec![1u8; 100_000]).unwrap();

    let run = d.berth(&["backup", "run", "files"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("uploads ") && run.stdout.contains(" ok: "),
        "{run:?}"
    );
    assert!(run.stdout.contains("1 files"), "{run:?}");

    let run = d.berth(&["backup", "list", "files", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let id = list["backups"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["backups"][0]["status"], "ok");
    assert_eq!(list["definitions"][0]["name"], "uploads");
    let run = d.berth(&["backup", "list", "files"]);
    assert!(
        run.stdout.contains(&id) && run.stdout.contains("last success"),
        "{run:?}"
    );

    // The dry run says what would happen and changes nothing.
    std::fs::write(uploads.join("new.txt"), "after the backup").unwrap();
    let run = d.berth(&["backup", "restore", "files", "--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&id) && run.stdout.contains("safety backup"),
        "{run:?}"
    );
    assert!(uploads.join("new.txt").exists());
    // Without a terminal to ask on, a restore needs --yes.
    let run = d.berth(&["backup", "restore", "files"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{run:?}");
    assert!(uploads.join("new.txt").exists());

    // The key, exported and taken off the server: verify needs it back.
    let run = d.berth(&["backup", "export-key"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("AGE-SECRET-KEY-1"));
    let keyfile = d.path().join("offline.key");
    std::fs::write(&keyfile, &run.stdout).unwrap();
    std::fs::remove_file(d.path().join("backup.key")).unwrap();
    let run = d.berth(&["backup", "verify", "files"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("--identity"), "{run:?}");
    // Backups go on without it: the public half is enough.
    let run = d.berth(&["backup", "run", "files"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = d.berth(&[
        "backup",
        "verify",
        "files",
        &id,
        "--identity",
        keyfile.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("drill ok"), "{run:?}");

    let run = d.berth(&[
        "backup",
        "restore",
        "files",
        &id,
        "--yes",
        "--identity",
        keyfile.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!uploads.join("new.txt").exists(), "{run:?}");
    assert_eq!(
        std::fs::read(uploads.join("cat.jpg")).unwrap().len(),
        100_000
    );
}
