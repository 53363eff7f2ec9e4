//! The dataset catalog end to end: after `conductor demo`, the datasets the
//! topologies touch are in the catalog as discovered (unregistered);
//! `catalog check` fails naming them; once each is registered (folded by
//! the lineage topology) it passes at 100 %; list and search filter by
//! licence, purpose and region.

mod support;

use serde_json::Value;
use support::*;

#[test]
fn register_list_search_and_check_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(conductor(dir.path()).args(["demo", "--people", "40", "--listen", "127.0.0.1:0"]));

    let listed: Value = serde_json::from_str(&run_ok(conductor(dir.path()).args([
        "catalog",
        "list",
        "--unregistered",
        "--json",
    ])))
    .unwrap();
    let discovered: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dataset_id"].as_str().unwrap())
        .collect();
    assert!(
        discovered
            .iter()
            .any(|d| d.ends_with("/log:ig.ingest.entities")),
        "lineage discovered the demo's datasets: {discovered:?}"
    );

    let out = conductor(dir.path())
        .args(["catalog", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains("entities: "), "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("read or write unregistered datasets"));

    // Register every dataset the check names, then fold the registrations.
    // (A dataset two topologies touch is listed under each.)
    let missing: Vec<String> = report
        .lines()
        .filter(|l| l.starts_with("  dataset:"))
        .map(|l| l.trim().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(!missing.is_empty());
    for (i, d) in missing.iter().enumerate() {
        let region = if i % 2 == 0 { "eu-west-1" } else { "us-east-1" };
        run_ok(conductor(dir.path()).args([
            "catalog",
            "register",
            d,
            "--license",
            "internal",
            "--purpose",
            "investigation",
            "--purpose",
            "analytics",
            "--retention",
            "P365D",
            "--region",
            region,
        ]));
    }
    run_topologies_to_end(dir.path(), &["lineage"]);
    let passed = run_ok(conductor(dir.path()).args(["catalog", "check"]));
    assert!(passed.contains("are registered (100 %)"), "{passed}");

    let eu: Value = serde_json::from_str(&run_ok(conductor(dir.path()).args([
        "catalog",
        "list",
        "--region",
        "eu-west-1",
        "--purpose",
        "investigation",
        "--json",
    ])))
    .unwrap();
    let eu = eu.as_array().unwrap();
    assert_eq!(eu.len(), missing.len().div_ceil(2), "{eu:?}");
    assert!(
        eu.iter()
            .all(|r| r["registered"] == true && r["license"] == "internal")
    );
    assert_eq!(
        eu[0]["purpose"],
        serde_json::json!(["investigation", "analytics"])
    );
    assert_eq!(eu[0]["retention"], "P365D");
    let none: Value = serde_json::from_str(&run_ok(conductor(dir.path()).args([
        "catalog",
        "list",
        "--purpose",
        "marketing",
        "--json",
    ])))
    .unwrap();
    assert_eq!(none, serde_json::json!([]));
    let found =
        run_ok(conductor(dir.path()).args(["catalog", "search", "projections.db:entities"]));
    assert!(found.starts_with("1 dataset(s)"), "{found}");
    assert!(found.contains("[registered]"), "{found}");

    // The registered dataset's node carries its purpose in the lineage graph.
    let node = missing.iter().find(|d| d.ends_with(":entities")).unwrap();
    let graph: Value = serde_json::from_str(&run_ok(
        conductor(dir.path()).args(["lineage", node, "--depth", "0", "--json"]),
    ))
    .unwrap();
    assert_eq!(graph["graph"].as_array().unwrap().len(), 1);

    let bad = conductor(dir.path())
        .args(["catalog", "register", "orders"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("dataset:NAMESPACE:NAME"));
}
