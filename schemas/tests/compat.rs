//! The schema-evolution checker.

use conductor_schemas::SchemaRegistry;
use conductor_schemas::compat::{CompatMode, CompatReport, check, check_files};

/// A record schema `ig.events.T` whose `data` record has the given fields.
fn schema(data_fields: &str) -> String {
    format!(
        r#"{{"type":"record","name":"T","namespace":"ig.events","fields":[
            {{"name":"tenant","type":"string"}},
            {{"name":"data","type":{{"type":"record","name":"TData","fields":[{data_fields}]}}}}]}}"#
    )
}

const BASE: &str = r#"{"name":"version","type":"long"}"#;

fn problems(report: CompatReport) -> Vec<String> {
    report.problems.iter().map(ToString::to_string).collect()
}

fn fails(old: &str, new: &str, mode: CompatMode) -> Vec<String> {
    problems(check(old, new, mode).expect_err("incompatible"))
}

#[test]
fn every_builtin_schema_is_fully_compatible_with_itself() {
    for schema in SchemaRegistry::builtin().iter() {
        check(schema.source_text, schema.source_text, CompatMode::Full)
            .unwrap_or_else(|report| panic!("{}: {report}", schema.name));
    }
}

#[test]
fn adding_optional_field_is_fully_compatible() {
    let new = schema(&format!(
        r#"{BASE},{{"name":"note","type":["null","string"],"default":null}}"#
    ));
    check(&schema(BASE), &new, CompatMode::Full).expect("compatible");
}

#[test]
fn adding_required_field_breaks_backward_naming_the_field() {
    let new = schema(&format!(r#"{BASE},{{"name":"foo","type":"string"}}"#));
    assert_eq!(
        fails(&schema(BASE), &new, CompatMode::Backward),
        ["field data.foo: added without a default (new readers cannot read old data)"]
    );
    // Old readers simply ignore the new field.
    check(&schema(BASE), &new, CompatMode::Forward).expect("forward compatible");
}

#[test]
fn removing_field_without_default_breaks_forward() {
    let old = schema(&format!(r#"{BASE},{{"name":"foo","type":"string"}}"#));
    assert_eq!(
        fails(&old, &schema(BASE), CompatMode::Forward),
        [
            "field data.foo: removed, and the old schema gives it no default (old readers cannot read new data)"
        ]
    );
    check(&old, &schema(BASE), CompatMode::Backward).expect("backward compatible");
}

#[test]
fn removing_field_with_default_is_fully_compatible() {
    let old = schema(&format!(
        r#"{BASE},{{"name":"foo","type":"string","default":"x"}}"#
    ));
    check(&old, &schema(BASE), CompatMode::Full).expect("compatible");
}

#[test]
fn changing_field_type_is_reported_with_path_and_direction() {
    let new = schema(r#"{"name":"version","type":"string"}"#);
    assert_eq!(
        fails(&schema(BASE), &new, CompatMode::Backward),
        ["field data.version: type changed from long to string (new readers cannot read old data)"]
    );
    assert_eq!(
        fails(&schema(BASE), &new, CompatMode::Full),
        [
            "field data.version: type changed from long to string (new readers cannot read old data)",
            "field data.version: type changed from long to string (old readers cannot read new data)"
        ]
    );
}

#[test]
fn promoting_int_to_long_is_backward_but_not_forward_compatible() {
    let old = schema(r#"{"name":"version","type":"int"}"#);
    check(&old, &schema(BASE), CompatMode::Backward).expect("int promotes to long");
    assert_eq!(
        fails(&old, &schema(BASE), CompatMode::Forward),
        ["field data.version: type changed from int to long (old readers cannot read new data)"]
    );
}

#[test]
fn numeric_and_string_promotions_follow_avro() {
    let field = |ty: &str| schema(&format!(r#"{{"name":"v","type":"{ty}"}}"#));
    for (old, new) in [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ] {
        check(&field(old), &field(new), CompatMode::Backward)
            .unwrap_or_else(|report| panic!("{old} -> {new}: {report}"));
    }
    for (old, new) in [("long", "int"), ("double", "float"), ("boolean", "int")] {
        assert!(
            check(&field(old), &field(new), CompatMode::Backward).is_err(),
            "{old} -> {new}"
        );
    }
}

#[test]
fn making_a_field_optional_is_backward_but_not_forward_compatible() {
    let old = schema(r#"{"name":"label","type":"string"}"#);
    let new = schema(r#"{"name":"label","type":["null","string"],"default":null}"#);
    check(&old, &new, CompatMode::Backward).expect("string fits the union");
    let problems = fails(&old, &new, CompatMode::Forward);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("field data.label: type changed from string to union [null, string]"),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("cannot hold null values"),
        "{problems:?}"
    );
}

const ENUM_OLD: &str =
    r#"{"name":"state","type":{"type":"enum","name":"State","symbols":["START","FAIL","OTHER"]}}"#;
const ENUM_FEWER: &str =
    r#"{"name":"state","type":{"type":"enum","name":"State","symbols":["START","OTHER"]}}"#;

#[test]
fn removing_enum_symbol_breaks_backward() {
    assert_eq!(
        fails(&schema(ENUM_OLD), &schema(ENUM_FEWER), CompatMode::Backward),
        [
            "field data.state: enum symbol(s) FAIL removed and the new enum has no default (new readers cannot read old data)"
        ]
    );
}

#[test]
fn adding_enum_symbol_breaks_forward_unless_old_enum_has_default() {
    assert_eq!(
        fails(&schema(ENUM_FEWER), &schema(ENUM_OLD), CompatMode::Forward),
        [
            "field data.state: enum symbol(s) FAIL added and the old enum has no default (old readers cannot read new data)"
        ]
    );
    let with_default = ENUM_FEWER.replace(r#"]}}"#, r#"],"default":"OTHER"}}"#);
    check(&schema(&with_default), &schema(ENUM_OLD), CompatMode::Full).expect("default covers it");
}

#[test]
fn nested_array_and_map_changes_name_the_path() {
    let old = schema(
        r#"{"name":"inputs","type":{"type":"array","items":{"type":"record","name":"Dataset","fields":[{"name":"name","type":"string"}]}}},
           {"name":"attributes","type":{"type":"map","values":"long"}}"#,
    );
    let new = schema(
        r#"{"name":"inputs","type":{"type":"array","items":{"type":"record","name":"Dataset","fields":[{"name":"name","type":"string"},{"name":"uri","type":"string"}]}}},
           {"name":"attributes","type":{"type":"map","values":"boolean"}}"#,
    );
    assert_eq!(
        fails(&old, &new, CompatMode::Backward),
        [
            "field data.inputs[].uri: added without a default (new readers cannot read old data)",
            "field data.attributes{}: type changed from long to boolean (new readers cannot read old data)"
        ]
    );
}

#[test]
fn renaming_a_record_needs_an_alias() {
    let old = schema(BASE);
    let renamed = old.replace(r#""name":"TData""#, r#""name":"Payload""#);
    let problems = fails(&old, &renamed, CompatMode::Backward);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("record renamed from TData to Payload"),
        "{problems:?}"
    );
    let aliased = old.replace(
        r#""name":"TData""#,
        r#""name":"Payload","aliases":["TData"]"#,
    );
    check(&old, &aliased, CompatMode::Backward).expect("alias matches the old name");
}

#[test]
fn renaming_a_field_with_an_alias_is_backward_compatible() {
    let new = schema(r#"{"name":"revision","type":"long","aliases":["version"]}"#);
    check(&schema(BASE), &new, CompatMode::Backward).expect("alias");
}

#[test]
fn unparsable_schema_is_reported_naming_which_one() {
    let report = check(&schema(BASE), "{not json", CompatMode::Backward).expect_err("parse error");
    let problems = problems(report);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("cannot parse new schema"),
        "{problems:?}"
    );
}

#[test]
fn check_files_labels_problems_with_the_file_path() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat-files");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let old = dir.join("old.avsc");
    let broken = dir.join("broken.avsc");
    std::fs::write(&old, schema(BASE)).expect("write");
    std::fs::write(&broken, "{").expect("write");
    check_files(&old, &old, CompatMode::Full).expect("same file");
    let report = check_files(&old, &broken, CompatMode::Full).expect_err("broken");
    assert!(report.to_string().contains("broken.avsc"), "{report}");
    let missing =
        check_files(&old, &dir.join("missing.avsc"), CompatMode::Full).expect_err("missing");
    assert!(missing.to_string().contains("missing.avsc"), "{missing}");
}

#[test]
fn report_lists_every_problem_one_per_line() {
    let new = schema(r#"{"name":"version","type":"string"},{"name":"foo","type":"string"}"#);
    let report = check(&schema(BASE), &new, CompatMode::Backward).expect_err("two problems");
    assert_eq!(report.problems.len(), 2);
    let text = report.to_string();
    assert!(
        text.starts_with("schema change is not backward compatible (2 problems)"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn mode_parses_from_cli_words() {
    assert_eq!("backward".parse::<CompatMode>(), Ok(CompatMode::Backward));
    assert_eq!("FORWARD".parse::<CompatMode>(), Ok(CompatMode::Forward));
    assert_eq!("full".parse::<CompatMode>(), Ok(CompatMode::Full));
    assert!("transitive".parse::<CompatMode>().is_err());
    assert_eq!(CompatMode::default(), CompatMode::Backward);
    assert_eq!(CompatMode::Full.to_string(), "full");
}
