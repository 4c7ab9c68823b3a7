use super::*;

#[test]
fn releases_are_numbered_per_app_and_current_is_committed() {
    let mut s = Store::open_in_memory().unwrap();
    let r1 = s.create_release("shop", "d1").unwrap();
    let r2 = s.create_release("shop", "d2").unwrap();
    let other = s.create_release("blog", "d3").unwrap();
    assert_eq!(
        (r1.id.as_str(), r2.id.as_str(), other.id.as_str()),
        ("r1", "r2", "r1")
    );
    assert_eq!(s.app("shop").unwrap().unwrap().current_release, None);

    s.set_current("shop", "r2").unwrap();
    assert_eq!(
        s.app("shop").unwrap().unwrap().current_release.as_deref(),
        Some("r2")
    );
    let list = s.releases("shop").unwrap();
    assert_eq!(
        list.iter()
            .map(|r| (r.id.as_str(), r.status))
            .collect::<Vec<_>>(),
        [("r2", ReleaseStatus::Live), ("r1", ReleaseStatus::Pending)]
    );
}

#[test]
fn reopen_keeps_state_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.create_release("shop", "d").unwrap();
        s.set_current("shop", "r1").unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(
        s.app("shop").unwrap().unwrap().current_release.as_deref(),
        Some("r1")
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(
        err.to_string().contains("newer than this berth knows"),
        "{err}"
    );
}

#[test]
fn running_deploys_become_interrupted() {
    let mut s = Store::open_in_memory().unwrap();
    s.create_release("shop", "d").unwrap();
    let new = NewDeploy {
        kind: DeployKind::Deploy,
        app: "shop",
        release: "r1",
        from_release: None,
        user: "ops",
    };
    let done = s.begin_deploy(&new).unwrap();
    s.finish_deploy(done, DeployResult::Ok, None, None).unwrap();
    let cut = s.begin_deploy(&new).unwrap();
    s.set_deploy_step(cut, Step::Build).unwrap();
    assert_eq!(s.interrupt_running_deploys().unwrap(), 1);
    let list = s.deploys(Some("shop"), 10).unwrap();
    let results: Vec<_> = list.iter().map(|d| d.result).collect();
    assert_eq!(results, [DeployResult::Interrupted, DeployResult::Ok]);
    assert_eq!(list[0].step, Step::Build);
    assert!(
        list[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("during step build")
    );
}

#[test]
fn a_process_is_recorded_again_in_place_and_read_until_forgotten() {
    let s = Store::open_in_memory().unwrap();
    let p = ProcessRecord {
        app: "a".into(),
        service: "web".into(),
        release: "r1".into(),
        instance: 0,
        pgid: 42,
        start_ticks: 1234,
        port: 10001,
    };
    s.record_process(&p).unwrap();
    s.record_process(&ProcessRecord {
        pgid: 43,
        ..p.clone()
    })
    .unwrap();
    let now = ProcessRecord { pgid: 43, ..p };
    assert_eq!(s.processes().unwrap(), std::slice::from_ref(&now));
    assert_eq!(
        s.processes().unwrap(),
        std::slice::from_ref(&now),
        "reading forgets nothing"
    );
    s.forget_process(&now).unwrap();
    assert!(s.processes().unwrap().is_empty());
}

#[test]
fn jobs_are_taken_once() {
    let mut s = Store::open_in_memory().unwrap();
    s.record_job(4242, "shop", "build").unwrap();
    s.record_job(4343, "shop", "build").unwrap();
    s.forget_job(4343).unwrap();
    assert_eq!(
        s.take_jobs().unwrap(),
        [(4242, "shop".to_owned(), "build".to_owned())]
    );
    assert!(s.take_jobs().unwrap().is_empty());
}

#[test]
fn a_process_group_is_forgotten_only_while_it_is_the_one_recorded() {
    let s = Store::open_in_memory().unwrap();
    let record = |pgid| ProcessRecord {
        app: "a".into(),
        service: "web".into(),
        release: "r1".into(),
        instance: 0,
        pgid,
        start_ticks: 0,
        port: 0,
    };
    s.record_process(&record(100)).unwrap();
    // The same instance started again (a rollback to a release still draining): the newer
    // group is recorded, and stopping the older one must not forget it.
    s.record_process(&record(200)).unwrap();
    s.forget_process(&record(100)).unwrap();
    assert_eq!(s.processes().unwrap(), [record(200)]);
}
