//! Stacks in a three-node swarm (manager n1, workers n2 and n3): the seed
//! tutorial's compose file deployed with `swarm deploy`, answering on every
//! node; redeploys that change only what changed; refusals that change
//! nothing; `stack rm` leaving nothing behind; and healthchecks (a task is
//! STARTING until healthy, and an unhealthy one is replaced); and image
//! pulls from a real registry started by the test. Real daemons in netns,
//! real Docker, the XDP data plane.

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use swarm_tests::cluster::three_node_swarm;
use swarm_tests::*;

const TUTORIAL: &str = "examples/tutorial/docker-compose.yml";

fn path(rel: &str) -> String {
    repo_root().join(rel).to_string_lossy().into_owned()
}

/// The tutorial's password, as its first step creates it (from stdin).
const PASSWORD: &str = "supersecretpassword";

/// The tutorial's external secret, made once as the tutorial's first step
/// makes it: `echo ... | swarm secret create db_password -`.
fn tutorial_secret() {
    let ls = swarm(&["secret", "ls", "--format", "json"])
        .ok()
        .json_lines();
    if ls.iter().any(|s| s["name"] == "db_password") {
        return;
    }
    let bin = swarm_bin().to_string_lossy().into_owned();
    let script = format!("echo {PASSWORD} | {bin} secret create db_password -");
    lab(&["exec", "n1", "bash", "-c", &script]).ok();
}

fn deploy(file: &str, stack: &str, extra: &[&str]) -> Run {
    if file == TUTORIAL {
        tutorial_secret();
    }
    let file = path(file);
    let mut args = vec!["deploy", "-c", &file];
    args.extend_from_slice(extra);
    args.push(stack);
    swarm(&args)
}

fn stack_services(stack: &str) -> Vec<Value> {
    let r = swarm(&["stack", "services", stack, "--format", "json"]);
    if r.code != 0 {
        return Vec::new();
    }
    r.json_lines()
}

/// One page of the tutorial's app through `node`'s port 8000, from the
/// lab's client: (container, request count, secret shown).
fn tutorial_page(node: &str) -> Option<(String, u64, String)> {
    let r = lab(&[
        "exec",
        "client",
        "curl",
        "-s",
        "-m",
        "5",
        &format!("http://{node}:8000/"),
    ]);
    let field = |id: &str| -> Option<String> {
        let start = r.stdout.find(&format!("<dd id=\"{id}\">"))? + id.len() + 10;
        let end = start + r.stdout[start..].find("</dd>")?;
        Some(r.stdout[start..end].to_string())
    };
    Some((
        field("hostname")?,
        field("requests")?.parse().ok()?,
        field("secret")?,
    ))
}

fn remove(stack: &str) {
    if !stack_services(stack).is_empty() {
        swarm(&["stack", "rm", stack]).ok();
    }
}

#[test]
fn the_tutorial_stack_answers_on_every_node_from_both_web_replicas_with_a_rising_count() {
    let _lab = three_node_swarm("xdp");
    remove("demo");
    let out = deploy(TUTORIAL, "demo", &[]).ok();
    for s in ["demo_nginx", "demo_web", "demo_redis"] {
        assert!(
            out.stdout.contains(&format!("Creating service {s}")),
            "{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("Creating network demo_default"),
        "{}",
        out.stdout
    );
    // Deploy waits: when it returns, every service runs its tasks.
    let counts: Vec<(String, String)> = stack_services("demo")
        .iter()
        .map(|s| {
            (
                s["Name"].as_str().unwrap().to_string(),
                s["Replicas"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("demo_nginx".to_string(), "3/3".to_string()),
            ("demo_redis".into(), "1/1".into()),
            ("demo_web".into(), "2/2".into())
        ]
    );
    let mut seen = BTreeSet::new();
    let mut last = 0;
    for round in 0..8 {
        for node in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
            let (container, count, secret) = wait_for(
                &format!("port 8000 on {node} to answer"),
                Duration::from_secs(20),
                || tutorial_page(node),
            );
            assert_eq!(secret, PASSWORD, "the page shows the secret");
            assert!(
                count > last,
                "the counter rises strictly: {count} after {last} (round {round}, {node})"
            );
            last = count;
            seen.insert(container);
        }
    }
    assert_eq!(seen.len(), 2, "both web replicas answered: {seen:?}");
}

#[test]
fn a_redeploy_changes_only_what_changed_and_prune_removes_services_left_out() {
    let _lab = three_node_swarm("xdp");
    remove("demo");
    deploy(TUTORIAL, "demo", &["--detach"]).ok();
    let versions = || -> Vec<(String, Value)> {
        let r = swarm(&["service", "inspect", "demo_web", "demo_nginx", "demo_redis"]).ok();
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["Spec"]["Name"].as_str().unwrap().to_string(),
                    s["Version"].clone(),
                )
            })
            .collect()
    };
    let before = versions();
    let again = deploy(TUTORIAL, "demo", &["--detach"]).ok();
    assert!(
        !again.stdout.contains("Creating") && !again.stdout.contains("Updating"),
        "{}",
        again.stdout
    );
    assert_eq!(versions(), before, "an unchanged file changes no service");

    let dir = tempfile_dir();
    let smaller = format!("{dir}/smaller.yml");
    std::fs::write(
        &smaller,
        "version: '3.1'\nservices:\n  web:\n    image: lsapan/docker-swarm-demo-web\n    deploy: {replicas: 3}\n",
    )
    .unwrap();
    let out = swarm(&["deploy", "--detach", "--prune", "-c", &smaller, "demo"]).ok();
    assert!(
        out.stdout.contains("Updating service demo_web"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Removing service demo_nginx"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Removing service demo_redis"),
        "{}",
        out.stdout
    );
    let names: Vec<String> = stack_services("demo")
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["demo_web"]);
    remove("demo");
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(unique("stack-test"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}

#[test]
fn refused_deploys_name_the_fault_and_change_nothing() {
    let _lab = three_node_swarm("xdp");
    remove("bad");
    let dir = tempfile_dir();
    let broken = format!("{dir}/docker-compose.yml");
    std::fs::write(
        &broken,
        "version: '3.8'\nservices:\n  web:\n    image: nginx\n    deploy:\n      replicas: two\n",
    )
    .unwrap();
    let r = swarm(&["deploy", "-c", &broken, "bad"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "{broken}:6:17: services.web.deploy.replicas must be a integer"
        )),
        "{}",
        r.stderr
    );
    // The second service's port is taken by the first: the whole deploy is
    // refused, and the first service is not left behind.
    std::fs::write(
        &broken,
        "version: '3.8'\nservices:\n  a:\n    image: lsapan/docker-swarm-demo-web\n    ports: ['8100:80']\n  b:\n    image: lsapan/docker-swarm-demo-web\n    ports: ['8100:81']\n",
    )
    .unwrap();
    let r = swarm(&["deploy", "--detach", "-c", &broken, "bad"]);
    assert_ne!(r.code, 0, "{r:#?}");
    assert!(
        r.stderr.contains("8100"),
        "the error names the port: {}",
        r.stderr
    );
    assert!(
        stack_services("bad").is_empty(),
        "nothing of the stack was created"
    );
    let nets = swarm(&["network", "ls", "--format", "json"])
        .ok()
        .json_lines();
    assert!(nets.iter().all(|n| n["Name"] != "bad_default"), "{nets:?}");

    // An external secret the cluster lacks: the refusal points at its key
    // in the file, and nothing is created.
    std::fs::write(
        &broken,
        "version: '3.8'\nservices:\n  a:\n    image: redis\n    secrets: [nope]\nsecrets:\n  nope:\n    external: true\n",
    )
    .unwrap();
    let r = swarm(&["deploy", "--detach", "-c", &broken, "bad"]);
    assert_ne!(r.code, 0, "{r:#?}");
    assert!(
        r.stderr.contains(&format!(
            "{broken}:7:3: secret \"nope\" is declared as external, but could not be found"
        )),
        "{}",
        r.stderr
    );
    assert!(stack_services("bad").is_empty());
}

#[test]
fn stack_rm_leaves_no_service_task_container_or_network_behind() {
    let _lab = three_node_swarm("xdp");
    remove("demo");
    deploy(TUTORIAL, "demo", &[]).ok();
    let out = swarm(&["stack", "rm", "demo"]).ok();
    assert!(
        out.stdout.contains("Removing network demo_default"),
        "{}",
        out.stdout
    );
    assert!(stack_services("demo").is_empty());
    wait_for(
        "the stack's containers to go",
        Duration::from_secs(30),
        || {
            // Only this stack's: a test before may have left its own.
            let names = docker(&[
                "ps",
                "-a",
                "--filter",
                "label=swarm.service.name",
                "--format",
                "{{.Label \"swarm.service.name\"}}",
            ])
            .ok()
            .stdout;
            (!names.lines().any(|n| n.starts_with("demo_"))).then_some(())
        },
    );
    let tasks = swarm(&["service", "ps", "demo_web"]);
    assert_ne!(tasks.code, 0, "the services are gone: {tasks:#?}");
    let nets = swarm(&["network", "ls", "--format", "json"])
        .ok()
        .json_lines();
    assert!(nets.iter().all(|n| n["Name"] != "demo_default"), "{nets:?}");
    let secrets = swarm(&["secret", "ls", "-q"]).ok().stdout;
    assert!(!secrets.trim().is_empty(), "the external secret remains");
    let r = swarm(&["stack", "rm", "demo"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("nothing found in stack: demo"),
        "{}",
        r.stderr
    );
}

/// Run `cmd` in the running container of `service`'s task, through the
/// engine (as an operator would check what a task sees).
fn in_task(service: &str, cmd: &[&str]) -> String {
    let label = format!("swarm.service.name={service}");
    let ids = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label={label}"),
        "--filter",
        "label=swarm.role=task",
    ])
    .ok();
    let id = ids.stdout.lines().next().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "no running container of {service}");
    let mut args = vec!["exec", id.as_str()];
    args.extend_from_slice(cmd);
    docker(&args).ok().stdout
}

/// Files below `dir` that contain `needle`.
fn files_containing(dir: &str, needle: &str) -> Vec<String> {
    let r = run(std::process::Command::new("grep").args(["-rlF", needle, dir]));
    r.stdout.lines().map(str::to_string).collect()
}

#[test]
fn secrets_and_configs_reach_only_the_nodes_whose_tasks_use_them_and_never_touch_a_disk() {
    let _lab = three_node_swarm("xdp");
    remove("sec");
    tutorial_secret();
    let dir = tempfile_dir();
    let token = unique("bytes-of-a-secret");
    std::fs::write(format!("{dir}/own.txt"), &token).unwrap();
    std::fs::write(format!("{dir}/app.conf"), "setting = 1\n").unwrap();
    let file = format!("{dir}/docker-compose.yml");
    std::fs::write(
        &file,
        "version: '3.8'\nservices:\n  app:\n    image: redis\n    deploy:\n      placement: {constraints: [node.hostname == n2]}\n    secrets:\n      - source: own\n        target: token\n        uid: '999'\n        mode: 0400\n      - db_password\n    configs:\n      - source: conf\n        target: /etc/app.conf\nsecrets:\n  own: {file: ./own.txt}\n  db_password: {external: true}\nconfigs:\n  conf: {file: ./app.conf}\n",
    )
    .unwrap();
    let out = swarm(&["deploy", "-c", &file, "sec"]).ok();
    assert!(
        out.stdout.contains("Creating secret sec_own"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Creating config sec_conf"),
        "{}",
        out.stdout
    );

    // The task sees each file where, and as, the file asked.
    assert_eq!(in_task("sec_app", &["cat", "/run/secrets/token"]), token);
    assert_eq!(
        in_task("sec_app", &["stat", "-c", "%u %a", "/run/secrets/token"]).trim(),
        "999 400"
    );
    assert_eq!(
        in_task("sec_app", &["cat", "/run/secrets/db_password"]).trim(),
        PASSWORD
    );
    assert_eq!(
        in_task("sec_app", &["cat", "/etc/app.conf"]),
        "setting = 1\n"
    );

    // Inspect never shows the value; the bytes are on no disk of any node:
    // not in raft's store, not in a task's directory, not in a log.
    let inspect = swarm(&["secret", "inspect", "sec_own"]).ok().stdout;
    assert!(!inspect.contains(&token), "{inspect}");
    for dir in ["/var/lib/swarm-lab", "/var/log/swarm-lab"] {
        assert_eq!(
            files_containing(dir, &token),
            Vec::<String>::new(),
            "secret bytes under {dir}"
        );
    }
    let on_tmpfs = files_containing("/run/swarm-lab/secrets", &token);
    assert_eq!(on_tmpfs.len(), 1, "only n2's task holds it: {on_tmpfs:?}");
    let fs =
        run(std::process::Command::new("stat").args(["-f", "-c", "%T", "/run/swarm-lab/secrets"]));
    assert_eq!(fs.stdout.trim(), "tmpfs");

    // n1 and n3 run no task of the service: the dispatcher never sent them
    // the secret (agents log the IDs they receive, never the bytes).
    let v: Value = serde_json::from_str(&inspect).unwrap();
    let id = v[0]["ID"].as_str().unwrap().to_string();
    for n in ["n1", "n3"] {
        let log = std::fs::read_to_string(format!("/var/log/swarm-lab/{n}.log")).unwrap();
        assert!(!log.contains(&id), "{n} received secret {id}");
    }
    let n2 = std::fs::read_to_string("/var/log/swarm-lab/n2.log").unwrap();
    assert!(n2.contains(&id), "n2 logs receiving {id}");

    // In use: not removed, and the refusal names the service.
    let r = swarm(&["secret", "rm", "db_password"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("is in use by the following service") && r.stderr.contains("sec_app"),
        "{}",
        r.stderr
    );

    // stack rm takes the stack's own secret and config, and leaves the
    // external one.
    let out = swarm(&["stack", "rm", "sec"]).ok();
    assert!(
        out.stdout.contains("Removing secret sec_own"),
        "{}",
        out.stdout
    );
    let left: Vec<String> = swarm(&["secret", "ls", "--format", "json"])
        .ok()
        .json_lines()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        left.contains(&"db_password".to_string()) && !left.contains(&"sec_own".to_string()),
        "{left:?}"
    );
    let configs = swarm(&["config", "ls", "-q"]).ok().stdout;
    assert!(configs.trim().is_empty(), "{configs}");
    wait_for(
        "the task's secret files to go",
        Duration::from_secs(30),
        || {
            files_containing("/run/swarm-lab/secrets", &token)
                .is_empty()
                .then_some(())
        },
    );
}

/// A client polling port 8000 of `node` from the lab's client until
/// dropped; `stop()` returns (answers, failures as status lines).
struct Poller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Poller {
    fn start(node: &'static str) -> Poller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let url = format!("http://{node}:8000/");
                let r = lab(&[
                    "exec",
                    "client",
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-m",
                    "3",
                    &url,
                ]);
                if r.stdout.trim() == "200" {
                    ok += 1;
                } else {
                    failed.push(format!("{} (curl exit {})", r.stdout.trim(), r.code));
                }
            }
            (ok, failed)
        });
        Poller { stop, handle }
    }

    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn service_json(name: &str) -> Value {
    let r = swarm(&["service", "inspect", name]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v[0].clone()
}

/// The IDs of a service's running tasks.
fn running_ids(service: &str) -> BTreeSet<String> {
    running_tasks(service)
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_bad_update_rolls_back_by_itself_and_port_8000_never_fails_a_request() {
    let _lab = three_node_swarm("xdp");
    if stack_services("demo").len() != 3 {
        remove("demo");
        deploy(TUTORIAL, "demo", &[]).ok();
    }
    // An image whose healthcheck never passes, built from the tutorial's.
    let dockerfile =
        "FROM lsapan/docker-swarm-demo-web\nHEALTHCHECK --interval=1s --retries=2 CMD false\n";
    let built = run(std::process::Command::new("bash").args([
        "-c",
        &format!("printf '{dockerfile}' | docker build -q -t swarm-test/web-unhealthy -"),
    ]));
    assert_eq!(built.code, 0, "{built:?}");
    let before = running_ids("demo_web");
    assert_eq!(before.len(), 2);

    let poller = Poller::start("198.18.0.12");
    let r = swarm(&[
        "service",
        "update",
        "--image",
        "swarm-test/web-unhealthy",
        "--update-failure-action",
        "rollback",
        "--update-order",
        "start-first",
        "demo_web",
    ]);
    let (answered, failed) = poller.stop();
    assert_ne!(r.code, 0, "the update waits and fails: {r:#?}");
    assert!(
        r.stderr.contains(
            "service demo_web did not converge: the update was rolled back: task demo_web."
        ) && r.stderr.contains("task: unhealthy container"),
        "{}",
        r.stderr
    );
    let svc = service_json("demo_web");
    assert_eq!(
        svc["UpdateStatus"]["State"], "rollback_completed",
        "{svc:#}"
    );
    assert_eq!(
        svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        "lsapan/docker-swarm-demo-web"
    );
    assert_eq!(
        running_ids("demo_web"),
        before,
        "start-first kept the old tasks running"
    );
    assert!(answered >= 5, "the client kept asking: {answered}");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\nnginx's errors:\n{}",
        failed.len(),
        answered + failed.len(),
        proxy_errors()
    );
}

/// What the tutorial's nginx tasks logged other than answered requests: on
/// a failed request, this says whether `web` did not resolve or refused.
fn proxy_errors() -> String {
    containers(&["com.docker.swarm.service.name=demo_nginx"], false)
        .iter()
        .map(|id| {
            let logs = run(std::process::Command::new("docker").args(["logs", id]));
            let lines: Vec<&str> = logs
                .stdout
                .lines()
                .chain(logs.stderr.lines())
                .filter(|l| !l.contains("\" 200 "))
                .collect();
            format!("{}:\n{}", &id[..12], lines.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_rotated_secret_rolls_its_service_and_a_drained_node_hands_its_tasks_over() {
    let _lab = three_node_swarm("xdp");
    if stack_services("demo").len() != 3 {
        remove("demo");
        deploy(TUTORIAL, "demo", &[]).ok();
    }
    let bin = swarm_bin().to_string_lossy().into_owned();
    let rotate = |value: &str| {
        let script = format!("echo {value} | {bin} secret update db_password -");
        lab(&["exec", "n1", "bash", "-c", &script]).ok();
    };
    let before = running_ids("demo_web");
    rotate("rotated-password");
    for node in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        wait_for(
            &format!("{node} to show the new secret"),
            Duration::from_secs(60),
            || {
                tutorial_page(node)
                    .filter(|(_, _, s)| s == "rotated-password")
                    .map(|_| ())
            },
        );
    }
    wait_for("the update to complete", Duration::from_secs(60), || {
        (service_json("demo_web")["UpdateStatus"]["State"] == "completed").then_some(())
    });
    let after = running_ids("demo_web");
    assert_eq!(after.len(), 2);
    assert!(
        after.is_disjoint(&before),
        "every task was replaced: {before:?} -> {after:?}"
    );

    // Drain a node that runs a web task: its tasks go elsewhere, and
    // every node keeps answering.
    let node = running_tasks("demo_web")[0]["Node"]
        .as_str()
        .unwrap()
        .to_string();
    swarm(&["node", "update", "--availability", "drain", &node]).ok();
    wait_for(
        &format!("{node} to run no task"),
        Duration::from_secs(60),
        || {
            let on_node = ["demo_web", "demo_nginx", "demo_redis"]
                .iter()
                .flat_map(|s| running_tasks(s))
                .filter(|t| t["Node"] == node.as_str())
                .count();
            (on_node == 0 && running_ids("demo_web").len() == 2).then_some(())
        },
    );
    for ip in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        wait_for(
            &format!("{ip} to answer with {node} drained"),
            Duration::from_secs(20),
            || tutorial_page(ip),
        );
    }
    swarm(&["node", "update", "--availability", "active", &node]).ok();
    rotate(PASSWORD);
    wait_for("the secret to be back", Duration::from_secs(60), || {
        tutorial_page("198.18.0.11")
            .filter(|(_, _, s)| s == PASSWORD)
            .map(|_| ())
    });
}

fn current_states(service: &str) -> Vec<(String, String)> {
    tasks(service)
        .iter()
        .filter(|t| t["DesiredState"] == "Running")
        .map(|t| {
            let state = t["CurrentState"].as_str().unwrap_or_default();
            let word = state
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            (word, t["Error"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn a_task_is_starting_until_its_healthcheck_passes_and_an_unhealthy_one_is_replaced() {
    let _lab = three_node_swarm("xdp");
    let name = unique("health");
    swarm(&[
        "service",
        "create",
        "--detach",
        "--name",
        &name,
        "--health-cmd",
        "test -e /tmp/ready",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        // Docker counts failures from the container's start unless a start
        // period is given: without one the container is unhealthy (and the
        // task FAILED) within a second, before the test makes it ready.
        "--health-start-period",
        "60s",
        "redis",
    ])
    .ok();
    wait_for(
        "the task to start its container",
        Duration::from_secs(30),
        || (current_states(&name).first()?.0 == "Starting").then_some(()),
    );
    holds_for(
        "the task stays STARTING while unhealthy-yet",
        Duration::from_secs(2),
        || current_states(&name).iter().all(|(s, _)| s == "Starting"),
    );
    let app = wait_for("the app container", Duration::from_secs(10), || {
        containers(
            &[&format!("swarm.service.name={name}"), "swarm.role=task"],
            true,
        )
        .into_iter()
        .next()
    });
    docker(&["exec", &app, "touch", "/tmp/ready"]).ok();
    wait_for(
        "the task to be RUNNING once healthy",
        Duration::from_secs(10),
        || (current_states(&name).first()?.0 == "Running").then_some(()),
    );
    // Now make it fail its check: the task fails and is replaced.
    docker(&["exec", &app, "rm", "/tmp/ready"]).ok();
    wait_for(
        "the unhealthy task to fail and be replaced",
        Duration::from_secs(30),
        || {
            let all = tasks(&name);
            let failed = all.iter().any(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Failed"))
                    && t["Error"] == "task: unhealthy container"
            });
            (failed && all.len() >= 2).then_some(())
        },
    );
    swarm(&["service", "rm", &name]).ok();
}

/// Debian's docker-registry on loopback (the engine trusts loopback
/// registries without TLS), killed when dropped.
struct Registry {
    child: std::process::Child,
    addr: &'static str,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile_dir();
        let config = format!("{dir}/config.yml");
        let addr = "127.0.0.1:5055";
        std::fs::write(
            &config,
            format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {dir}/data\nhttp:\n  addr: {addr}\nlog:\n  level: error\n"),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .args(["serve", &config])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prerequisite missing: docker-registry (scripts/test.sh installs it)");
        let url = format!("http://{addr}/v2/");
        wait_for("the registry to answer", Duration::from_secs(20), || {
            (run(std::process::Command::new("curl").args(["-sf", &url])).code == 0).then_some(())
        });
        Registry { child, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_node_without_the_image_pulls_it_from_the_registry_and_a_missing_one_is_rejected() {
    let _lab = three_node_swarm("xdp");
    let registry = Registry::start();
    let image = format!("{}/swarm-whoami:pulled", registry.addr);
    docker(&["tag", "swarm/whoami:latest", &image]).ok();
    docker(&["push", &image]).ok();
    docker(&["rmi", &image]).ok();
    assert_ne!(
        docker(&["image", "inspect", &image]).code,
        0,
        "the engine lacks the image"
    );

    let name = unique("pulled");
    swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "2",
        &image,
    ])
    .ok();
    assert_eq!(running_tasks(&name).len(), 2);
    assert_eq!(
        docker(&["image", "inspect", &image]).code,
        0,
        "the agent pulled it"
    );
    swarm(&["service", "rm", &name]).ok();

    let missing = format!("{}/never-pushed:v1", registry.addr);
    let name = unique("missing");
    swarm(&["service", "create", "--detach", "--name", &name, &missing]).ok();
    let err = wait_for("the task to be rejected", Duration::from_secs(30), || {
        tasks(&name)
            .iter()
            .find(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Rejected"))
            })
            .map(|t| t["Error"].as_str().unwrap_or_default().to_string())
    });
    assert!(err.contains(&format!("pulling image {missing}")), "{err}");
    swarm(&["service", "rm", &name]).ok();
    docker(&["rmi", &image]).ok();
}

#[test]
fn a_service_that_depends_on_a_healthy_one_starts_only_once_that_one_is_healthy() {
    let _lab = three_node_swarm("xdp");
    remove("dep");
    let dir = tempfile_dir();
    let file = format!("{dir}/docker-compose.yml");
    std::fs::write(
        &file,
        "version: '3.8'\nservices:\n  db:\n    image: redis\n    healthcheck:\n      test: ['CMD-SHELL', 'sleep 2 && redis-cli ping']\n      interval: 1s\n  api:\n    image: redis\n    depends_on:\n      db:\n        condition: service_healthy\n",
    )
    .unwrap();
    swarm(&["deploy", "--detach", "-c", &file, "dep"]).ok();
    // While db is not yet healthy, api's task waits, saying why.
    wait_for("api to wait for db", Duration::from_secs(30), || {
        let waiting = current_states("dep_api").iter().any(|(state, err)| {
            state == "Pending" && err.contains("waiting for service dep_db to have a healthy task")
        });
        let db_unhealthy = current_states("dep_db").iter().all(|(s, _)| s != "Running");
        (waiting && db_unhealthy).then_some(())
    });
    wait_for(
        "api to run once db is healthy",
        Duration::from_secs(60),
        || (!running_tasks("dep_api").is_empty()).then_some(()),
    );
    assert!(!running_tasks("dep_db").is_empty());
    remove("dep");
}

#[test]
fn a_compose_services_container_options_reach_its_containers() {
    let _lab = three_node_swarm("xdp");
    remove("opt");
    let dir = tempfile_dir();
    let file = format!("{dir}/docker-compose.yml");
    std::fs::write(
        &file,
        "version: '3.8'\nservices:\n  app:\n    image: redis\n    user: '999'\n    working_dir: /tmp\n    hostname: opt-host\n    read_only: true\n    stop_grace_period: 3s\n    labels: {team: blue}\n    ulimits: {nofile: {soft: 2000, hard: 4000}}\n    tmpfs: [/run/scratch]\n    volumes:\n      - data:/data\n    extra_hosts: ['db.example:192.0.2.7']\nvolumes:\n  data: {}\n",
    )
    .unwrap();
    let out = swarm(&["deploy", "-c", &file, "opt"]).ok();
    assert!(!out.stderr.contains("Ignoring"), "{}", out.stderr);
    assert_eq!(in_task("opt_app", &["id", "-u"]).trim(), "999");
    assert_eq!(in_task("opt_app", &["pwd"]).trim(), "/tmp");
    assert_eq!(in_task("opt_app", &["hostname"]).trim(), "opt-host");
    assert_eq!(
        in_task("opt_app", &["sh", "-c", "ulimit -n"]).trim(),
        "2000"
    );
    assert!(in_task("opt_app", &["getent", "hosts", "db.example"]).contains("192.0.2.7"));
    let mounts = in_task("opt_app", &["cat", "/proc/mounts"]);
    assert!(mounts.contains(" /run/scratch tmpfs "), "{mounts}");
    assert!(
        mounts.contains(" / ")
            && mounts
                .lines()
                .any(|l| l.split(' ').nth(1) == Some("/") && l.contains(" ro,")),
        "read-only root: {mounts}"
    );
    let label = "label=swarm.service.name=opt_app";
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        label,
        "--filter",
        "label=swarm.role=task",
    ])
    .ok()
    .stdout;
    let inspect = docker(&["inspect", "--format", "{{index .Config.Labels \"team\"}} {{.Config.StopTimeout}} {{range .Mounts}}{{.Name}}{{end}} {{index .Config.Labels \"com.docker.stack.namespace\"}} {{index .Config.Labels \"com.docker.swarm.service.name\"}}", id.trim()]).ok().stdout;
    // The last two: the labels Docker gives a stack's task containers.
    assert_eq!(inspect.trim(), "blue 3 opt_data opt opt_app");
    remove("opt");
}

/// A real Prometheus, scraping every lab node each second, until dropped.
struct Prometheus {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Prometheus {
    fn start(targets: &[&str]) -> Prometheus {
        let dir = std::env::temp_dir().join(unique("prometheus"));
        std::fs::create_dir_all(&dir).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}:9323'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n- job_name: swarm\n  static_configs:\n  - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A port nothing holds now; Prometheus takes it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's package; scripts/setup.sh installs it)");
        Prometheus { child, dir, port }
    }

    /// The samples of an instant query: (labels, value).
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let r = run(std::process::Command::new("curl").args([
            "-s",
            "-m",
            "5",
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            "--data-urlencode",
            &format!("query={promql}"),
        ]));
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let value = s["value"][1].as_str().and_then(|x| x.parse().ok());
                (s["metric"].clone(), value.unwrap_or(f64::NAN))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_scrapes_raft_data_plane_and_dns_metrics_from_every_node() {
    let _lab = three_node_swarm("xdp");
    if stack_services("demo").len() != 3 {
        remove("demo");
        deploy(TUTORIAL, "demo", &[]).ok();
    }
    let nodes = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];
    // Requests through the mesh, each making nginx look `web` up by name.
    for node in nodes {
        wait_for(
            &format!("{node}:8000 to answer"),
            Duration::from_secs(30),
            || tutorial_page(node),
        );
    }
    // What the daemon serves is valid exposition text, by Prometheus' own rules.
    for node in nodes {
        let text = run(std::process::Command::new("curl").args([
            "-sf",
            "-m",
            "5",
            &format!("http://{node}:9323/metrics"),
        ]));
        assert_eq!(text.code, 0, "{node}: {text:?}");
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package)");
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.stdout.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics on {node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let managers = swarm(&["node", "ls", "--format", "{{.ManagerStatus}}"])
        .ok()
        .stdout
        .lines()
        .filter(|l| !l.is_empty())
        .count();
    let prom = Prometheus::start(&nodes);
    wait_for(
        "Prometheus to scrape every node",
        Duration::from_secs(60),
        || {
            let up = prom.query("up == 1");
            (up.len() == 3).then_some(())
        },
    );
    // Raft is the managers' alone.
    let terms = prom.query("swarm_raft_term");
    assert_eq!(terms.len(), managers, "{terms:?}");
    assert!(terms.iter().all(|(_, v)| *v >= 1.0), "{terms:?}");
    let leaders = prom.query("sum(swarm_raft_is_leader)");
    assert_eq!(leaders.first().map(|s| s.1), Some(1.0), "{leaders:?}");
    let packets = prom.query(r#"sum(swarm_dataplane_packets_total{frontend=~"demo_nginx.*"})"#);
    assert!(
        packets.first().is_some_and(|s| s.1 > 0.0),
        "the published port's packets: {packets:?}"
    );
    let names = prom.query(r#"sum(swarm_dns_queries_total{outcome="cluster"})"#);
    assert!(
        names.first().is_some_and(|s| s.1 > 0.0),
        "nginx's lookups of web: {names:?}"
    );
    let running = prom.query(r#"max(swarm_tasks{state="running"})"#);
    assert!(
        running.first().is_some_and(|s| s.1 >= 6.0),
        "3 nginx, 2 web and 1 redis: {running:?}"
    );
}
