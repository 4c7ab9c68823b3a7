//! Secrets never appear in any export: the spec holds none, and the manifests name them.

use crate::shop;

#[test]
fn no_secret_value_in_any_export() {
    let app = shop();
    // The values a server would inject: none of them may show up anywhere.
    let values = app.resolve_env(|name| Some(format!("s3cr3t-value-of-{name}")));
    assert!(
        values
            .values()
            .any(|v| v.contains("s3cr3t-value-of-DATABASE_URL"))
    );
    let mut outputs = vec![
        export::systemd::unit(&export::systemd::Options::default()),
        export::firewall::nftables(&export::firewall::Options::default()),
        export::firewall::ufw(&export::firewall::Options::default()),
        export::grafana::dashboard(&app).contents,
    ];
    outputs.extend(
        export::prometheus::files(&app, &export::prometheus::Options::default())
            .into_iter()
            .map(|f| f.contents),
    );
    let k8s = export::kubernetes::Options {
        static_image: Some("nginx:1.27".to_owned()),
        ..Default::default()
    };
    let manifests = export::kubernetes::files(&app, &k8s).unwrap();
    outputs.extend(manifests.iter().map(|f| f.contents.clone()));
    for out in &outputs {
        assert!(!out.contains("s3cr3t"), "a secret value leaked:\n{out}");
    }
    // Every secret is referenced by name from the Secret, never given a value.
    let all = export::kubernetes::one_document(&manifests);
    for name in app.secrets.keys() {
        assert!(
            all.contains(&format!("key: \"{name}\"")),
            "{name} not referenced"
        );
        let lines: Vec<&str> = all.lines().map(str::trim).collect();
        for (i, _) in lines
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == format!("- name: \"{name}\""))
        {
            assert_eq!(lines[i + 1], "valueFrom:", "{name} has a value");
        }
    }
    assert!(
        !all.contains("kind: \"Secret\""),
        "no Secret object is written"
    );
}
