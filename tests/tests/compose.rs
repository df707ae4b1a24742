//! Compose files: `swarm stack config` against docker's own loader
//! (`docker stack config`) over the corpus in tests/compose, and the
//! errors for files that are broken. Needs the docker CLI, not the lab.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use swarm_tests::{repo_root, run, swarm_bin, Run};

fn corpus(dir: &str) -> PathBuf {
    repo_root().join("tests/compose").join(dir)
}

/// The variables the corpus's interpolation file uses.
const VARS: &[(&str, &str)] = &[
    ("CORPUS_SET", "val"),
    ("CORPUS_EMPTY", ""),
    ("CORPUS_REPLICAS", "4"),
    ("CORPUS_RATIO", "0.25"),
    ("CORPUS_PORT", "8080"),
    ("CORPUS_YES", "yes"),
];

fn stack_config(program: &Path, pre: &[&str], dir: &Path, files: &[String], extra: &[&str]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(pre)
        .arg("config")
        .current_dir(dir)
        .envs(VARS.iter().copied());
    for f in files {
        cmd.args(["-c", f]);
    }
    run(cmd.args(extra))
}

fn swarm_config(dir: &Path, files: &[String], extra: &[&str]) -> Run {
    stack_config(&swarm_bin(), &["stack"], dir, files, extra)
}

fn docker_config(dir: &Path, files: &[String], extra: &[&str]) -> Run {
    let r = stack_config(Path::new("docker"), &["stack"], dir, files, extra);
    assert!(
        !r.stderr.contains("unknown command") && !r.stderr.contains("not found"),
        "the docker CLI with `stack config` is a prerequisite: {r:#?}"
    );
    r
}

/// A printed document as data, read with the same YAML rules for both.
fn parsed(text: &str) -> Value {
    let node = swarm_compose::yaml::parse(Path::new("output"), text).expect("printed YAML parses");
    swarm_compose::yaml::to_json(&node)
}

/// Each corpus file, with `NAME.override.yml` laid over `NAME.yml`.
fn cases() -> Vec<Vec<String>> {
    let dir = corpus("valid");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") && !n.ends_with(".override.yml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let over = n.replace(".yml", ".override.yml");
            if dir.join(&over).exists() {
                vec![n, over]
            } else {
                vec![n]
            }
        })
        .collect()
}

#[test]
fn stack_config_prints_what_docker_stack_config_prints_for_every_corpus_file() {
    let dir = corpus("valid");
    let cases = cases();
    assert!(cases.len() >= 8, "the corpus is there: {cases:?}");
    for files in cases {
        for extra in [&[][..], &["--skip-interpolation"][..]] {
            let ours = swarm_config(&dir, &files, extra);
            let theirs = docker_config(&dir, &files, extra);
            if theirs.code != 0 {
                assert_ne!(ours.code, 0, "{files:?} {extra:?}: docker refuses, so must we: {ours:#?}\ndocker: {theirs:#?}");
                continue;
            }
            assert_eq!(
                ours.code, 0,
                "{files:?} {extra:?}: docker accepts, so must we: {ours:#?}"
            );
            assert_eq!(
                parsed(&ours.stdout),
                parsed(&theirs.stdout),
                "{files:?} {extra:?}: the same document\nours:\n{}\ndocker:\n{}",
                ours.stdout,
                theirs.stdout
            );
        }
    }
}

#[test]
fn broken_compose_files_give_file_line_column_and_docker_refuses_them_too() {
    let dir = corpus("invalid");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the broken corpus is there: {files:?}");
    for f in files {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{f} starts with '# expect: LINE:COL: message'"));
        let ours = swarm_config(&dir, std::slice::from_ref(&f), &[]);
        assert_ne!(ours.code, 0, "{f}: refused: {ours:#?}");
        let want = format!("{f}:{expect}");
        assert!(
            ours.stderr.contains(&want),
            "{f}: the error names the file, line and column\nwant: {want}\ngot: {}",
            ours.stderr
        );
        assert!(
            ours.stdout.is_empty(),
            "{f}: nothing printed on a refusal: {}",
            ours.stdout
        );
        let theirs = docker_config(&dir, std::slice::from_ref(&f), &[]);
        assert_ne!(theirs.code, 0, "{f}: docker refuses it too: {theirs:#?}");
    }
}

#[test]
fn the_env_file_beside_the_first_compose_file_is_honoured_and_the_environment_wins() {
    let dir = corpus("dotenv");
    let files = vec!["docker-compose.yml".to_string()];
    let ours = swarm_config(&dir, &files, &[]).ok();
    let doc = parsed(&ours.stdout);
    assert_eq!(
        doc["services"]["web"]["image"], "nginx:from-dotenv",
        "{}",
        ours.stdout
    );
    assert_eq!(
        doc["services"]["web"]["deploy"]["replicas"], 3,
        "{}",
        ours.stdout
    );
    let mut cmd = Command::new(swarm_bin());
    cmd.args(["stack", "config", "-c", "docker-compose.yml"])
        .current_dir(&dir)
        .env("DOTENV_TAG", "from-env");
    let won = run(&mut cmd).ok();
    assert_eq!(
        parsed(&won.stdout)["services"]["web"]["image"],
        "nginx:from-env"
    );
    // Docker's stack deploy ignores the file (moby#29133): the difference
    // is deliberate, and documented.
    let theirs = docker_config(&dir, &files, &[]);
    assert_ne!(
        parsed(&theirs.stdout)["services"]["web"]["image"],
        "nginx:from-dotenv",
        "{theirs:#?}"
    );
}
