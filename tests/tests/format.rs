//! `--format` templates against docker's own: the same objects rendered by
//! docker's Go templates and by ours must print the same text.

use serde_json::Value;
use swarm_orchestrator::template::{render, render_inspected, Format};
use swarm_tests::docker;

fn template(format: &str) -> (String, bool) {
    match Format::parse(format).unwrap_or_else(|e| panic!("{format}: {e}")) {
        Format::Template { source, table } => (source, table),
        other => panic!("{format} is not a template: {other:?}"),
    }
}

fn docker_ok(args: &[&str]) -> String {
    let r = docker(args);
    assert_eq!(r.code, 0, "docker {args:?}: {r:?}");
    r.stdout
}

#[test]
fn templates_print_what_docker_s_print_for_the_same_object() {
    // Every Docker host has the `bridge` network: its inspect object is the data.
    let object: Value = serde_json::from_str(&docker_ok(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{json .}}",
    ]))
    .unwrap();
    let templates = [
        "{{.Name}}",
        "{{.Name | upper}} {{lower .Driver}} {{title .Scope}}",
        "{{truncate .Id 12}}",
        "{{json .Name}} {{json .EnableIPv6}} {{json .Labels}}",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        r#"{{join (split .Name "i") "-"}}"#,
        "[{{pad .Driver 2 1}}]",
        "{{if .Internal}}internal{{else}}external{{end}}",
        r#"{{printf "%s/%s" .Driver .Scope}} {{len .Name}}"#,
        r#"{{index .Options "com.docker.network.bridge.name"}}"#,
        r"{{.Name}}\t{{.Scope}}",
    ];
    for t in templates {
        let theirs = docker_ok(&["network", "inspect", "bridge", "--format", t]);
        let (source, _) = template(t);
        let mine = render_inspected(&source, std::slice::from_ref(&object)).unwrap();
        assert_eq!(mine, theirs, "template {t}");
    }
}

#[test]
fn table_templates_align_and_name_columns_as_docker_s_do() {
    // `network ls` objects as docker's own `--format json` gives them.
    let items: Vec<Value> = docker_ok(&["network", "ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        items.len() >= 3,
        "bridge, host and none at least: {items:?}"
    );
    for t in [
        r"table {{.Name}}\t{{.Driver}}\t{{.Scope}}",
        r"table {{.Scope}}\t{{.Name | upper}}",
        "table {{.Name}}",
        r"{{.Name}}\t{{.Driver}}",
        r"{{.Name}}\n",
    ] {
        let theirs = docker_ok(&["network", "ls", "--format", t]);
        let (source, table) = template(t);
        assert_eq!(
            render(&source, table, &items).unwrap(),
            theirs,
            "template {t}"
        );
    }
}
