//! `berth check` and the client's behaviour without a daemon.

use crate::harness::*;

#[test]
fn examples_pass_check() {
    let state = tempfile::tempdir().unwrap();
    for (dir, summary) in [
        (
            "examples/hello",
            "ok: app hello — 1 service (web x2), 1 route",
        ),
        (
            "examples/shop",
            "ok: app shop — 2 services (web x2, worker), 2 routes",
        ),
    ] {
        let run = berth(state.path(), &["check", repo().join(dir).to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.trim(), summary);
    }
}

#[test]
fn every_problem_is_reported_with_its_place_and_exit_2() {
    let app = app(&[(
        "berth.toml",
        "[app]\nname = \"shop\"\n\n[services.web]\ncomand = \"run\"\ninstances = 0\nstop_timeout = \"5 s\"\n\n[[routes]]\npath = \"/\"\nservice = \"wbe\"\n",
    )]);
    let state = tempfile::tempdir().unwrap();
    let run = berth(state.path(), &["check", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    let file = app.path().join("berth.toml").display().to_string();
    for expected in [
        format!("{file}:5:1"),
        "did you mean `command`?".to_owned(),
        format!("{file}:6:13"),
        format!("{file}:7:16"),
        format!("{file}:11:11"),
        "did you mean `web`?".to_owned(),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "missing {expected:?} in:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn a_directory_without_berth_toml_is_bad_input() {
    let empty = tempfile::tempdir().unwrap();
    let run = berth(empty.path(), &["check", empty.path().to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no berth.toml in"), "{run:?}");
}

#[test]
fn without_a_daemon_the_client_says_how_to_start_one() {
    let state = tempfile::tempdir().unwrap();
    let run = berth(state.path(), &["status"]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = format!(
        "error: no berth daemon answers at {}/berth.sock; start one with: berth serve --state {}\n",
        state.path().display(),
        state.path().display()
    );
    assert_eq!(run.stderr, expected);
}

#[test]
fn bad_arguments_exit_2() {
    let state = tempfile::tempdir().unwrap();
    let run = berth(state.path(), &["logs", "hello", "--since", "ten minutes"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--since ten minutes"), "{run:?}");
    let run = berth(state.path(), &["deploy", "--no-such-flag"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn check_finds_links_out_of_the_tree_and_routes_another_app_serves_before_any_upload() {
    let d = Daemon::start();
    let blog = app(&[
        (
            "berth.toml",
            "[app]\nname = \"blog\"\n[[routes]]\nhost = \"*\"\npath = \"/\"\nstatic = \"public\"\n",
        ),
        ("public/index.html", "blog"),
    ]);
    assert_eq!(d.berth(&["deploy", blog.path().to_str().unwrap()]).code, 0);

    let shop = app(&[
        (
            "berth.toml",
            "[app]\nname = \"shop\"\n[[routes]]\nhost = \"*\"\npath = \"/\"\nstatic = \"public\"\n\
             [[routes]]\nhost = \"shop.test\"\npath = \"/\"\nstatic = \"public\"\n",
        ),
        ("public/index.html", "shop"),
    ]);
    std::os::unix::fs::symlink("/etc/passwd", shop.path().join("public/passwd")).unwrap();
    std::os::unix::fs::symlink("../../../secret", shop.path().join("public/up")).unwrap();
    let dir = shop.path().to_str().unwrap();
    for args in [vec!["check", dir], vec!["deploy", dir]] {
        let run = d.berth(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        for expected in [
            "2 symlinks in",
            "public/passwd -> /etc/passwd",
            "public/up -> ../../../secret",
            "error: route host \"*\" path \"/\" is already served by app blog",
        ] {
            assert!(run.stderr.contains(expected), "{expected:?}: {run:?}");
        }
        assert!(!run.stderr.contains("shop.test"), "{run:?}");
        assert!(!run.stderr.contains("packed"), "nothing is packed: {run:?}");
    }
    assert!(d.status()["apps"].as_array().unwrap().len() == 1);

    // Without a daemon the directory is still checked, and the output says what was not.
    let alone = berth(
        &tempfile::tempdir().unwrap().path().join("none"),
        &["check", dir],
    );
    assert_eq!(alone.code, 2, "{alone:?}");
    std::fs::remove_file(shop.path().join("public/passwd")).unwrap();
    std::fs::remove_file(shop.path().join("public/up")).unwrap();
    let alone = berth(
        &tempfile::tempdir().unwrap().path().join("none"),
        &["check", dir],
    );
    assert_eq!(alone.code, 0, "{alone:?}");
    assert!(
        alone
            .stderr
            .contains("the routes were not checked against other apps'"),
        "{alone:?}"
    );
}
