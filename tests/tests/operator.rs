//! Operating a three-node swarm (manager n1, workers n2 and n3) from the
//! CLI: `service logs` and `service exec` run on a manager reach a task on
//! another node through the leader's broker and that task's agent, also
//! from a manager that does not lead; `events` shows the changes. Real
//! daemons in netns, real Docker.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use swarm_tests::cluster::three_node_swarm;
use swarm_tests::*;

/// What the task prints: two lines on stdout, one on stderr, then a tick
/// every 200 ms.
const CHATTER: &str = "echo out-1; echo err-1 >&2; echo out-2; while sleep 0.2; do echo tick; done";

/// `swarm ARGS...` on `node` with `input` on its stdin.
fn swarm_with_stdin(node: &str, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(repo_root().join("scripts/lab.sh"))
        .args(["exec", node, swarm_bin().to_str().expect("utf-8 path")])
        .args(args)
        .env("SWARM_BIN", swarm_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab.sh runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    let out = child.wait_with_output().expect("the command ends");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The one running task of `service`: its ID and its node's hostname.
fn only_task(service: &str) -> (String, String) {
    let tasks = running_tasks(service);
    assert_eq!(tasks.len(), 1, "one running task of {service}: {tasks:?}");
    let t = &tasks[0];
    (
        t["ID"].as_str().expect("an ID").to_string(),
        t["Node"].as_str().expect("a node").to_string(),
    )
}

fn chatter_on_n2() -> (String, String) {
    swarm(&[
        "service",
        "create",
        "--detach",
        "--name",
        "chatter",
        "--constraint",
        "node.hostname==n2",
        "redis:latest",
        "sh",
        "-c",
        CHATTER,
    ])
    .ok();
    wait_for("chatter running on n2", Duration::from_secs(60), || {
        (running_tasks("chatter").len() == 1).then_some(())
    });
    let (id, node) = only_task("chatter");
    assert_eq!(node, "n2", "the constraint put the task on n2");
    (id, node)
}

#[test]
fn service_logs_on_the_manager_shows_a_task_on_another_node_with_that_nodes_name() {
    let _lab = three_node_swarm("xdp");
    swarm(&["service", "rm", "chatter"]);
    let (id, _) = chatter_on_n2();
    let short = &id[..12];
    let prefix = format!("chatter.1.{short}@n2    | ");

    // Without -f the command ends once the agent has sent the log so far.
    let all = wait_for(
        "the first lines in the logs",
        Duration::from_secs(30),
        || {
            let r = swarm(&["service", "logs", "chatter"]).ok();
            r.stdout.contains("tick").then_some(r)
        },
    );
    // stdout and stderr are two pipes: their lines may come in either order.
    let lines: Vec<&str> = all.stdout.lines().collect();
    let mut first: Vec<&str> = lines[..3].to_vec();
    first.sort();
    let want: Vec<String> = ["err-1", "out-1", "out-2"]
        .iter()
        .map(|l| format!("{prefix}{l}"))
        .collect();
    assert_eq!(first, want, "{}", all.stdout);
    assert!(
        lines.iter().all(|l| l.starts_with(&prefix)),
        "{}",
        all.stdout
    );

    // A task ID names the task alone; --no-task-ids drops it from the prefix.
    let by_task = swarm(&["service", "logs", "--no-task-ids", &id]).ok();
    assert!(
        by_task
            .stdout
            .lines()
            .any(|l| l == "chatter.1@n2    | out-1"),
        "{}",
        by_task.stdout
    );
    let tail = swarm(&["service", "logs", "-n", "1", "chatter"]).ok();
    assert_eq!(tail.stdout.lines().count(), 1, "{}", tail.stdout);
    let raw = swarm(&["service", "logs", "--raw", "chatter"]).ok();
    assert!(raw.stdout.lines().any(|l| l == "out-1"), "{}", raw.stdout);
    assert!(!raw.stdout.contains('|'), "no prefixes: {}", raw.stdout);

    // -t puts Docker's RFC 3339 timestamp before the prefix.
    let stamped = swarm(&["service", "logs", "-t", "-n", "1", "chatter"]).ok();
    let (ts, rest) = stamped
        .stdout
        .trim_end()
        .split_once(' ')
        .expect("a timestamp, a space, the rest");
    assert!(
        ts.len() > 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
        "{ts:?} is an RFC 3339 UTC time"
    );
    assert!(rest.starts_with(&prefix), "{rest}");

    // --since now leaves out what came before (Docker counts in whole
    // seconds: the task has to have run past the second of its first
    // lines); -f then shows new lines as the task prints them, until the
    // caller goes.
    wait_for("two seconds of ticks", Duration::from_secs(30), || {
        let r = swarm(&["service", "logs", "chatter"]).ok();
        (r.stdout.matches("| tick").count() >= 10).then_some(())
    });
    let mut follow = Command::new(repo_root().join("scripts/lab.sh"))
        .args(["exec", "n1", swarm_bin().to_str().expect("utf-8 path")])
        .args(["service", "logs", "-f", "--since", "0s", "chatter"])
        .env("SWARM_BIN", swarm_bin())
        .stdout(Stdio::piped())
        .spawn()
        .expect("lab.sh runs");
    let mut out = BufReader::new(follow.stdout.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ticks = 0;
    let mut line = String::new();
    while ticks < 3 && Instant::now() < deadline {
        line.clear();
        if out.read_line(&mut line).expect("reads") == 0 {
            break;
        }
        assert!(line.starts_with(&prefix), "{line:?}");
        assert!(
            !line.contains("out-1"),
            "nothing from before --since: {line:?}"
        );
        ticks += line.contains("| tick") as usize;
    }
    assert_eq!(ticks, 3, "-f delivers new lines as they come");

    // Following a service takes in tasks that start after it began: the
    // second replica's first line comes down the same stream, with its
    // own prefix.
    swarm(&["service", "scale", "--detach", "chatter=2"]).ok();
    let mut second = None;
    while second.is_none() && Instant::now() < deadline + Duration::from_secs(60) {
        line.clear();
        if out.read_line(&mut line).expect("reads") == 0 {
            break;
        }
        if line.starts_with("chatter.2.") && line.ends_with("@n2    | out-1\n") {
            second = Some(line.clone());
        }
    }
    follow.kill().ok();
    follow.wait().ok();
    assert!(
        second.is_some(),
        "the new task's lines join a -f on its service"
    );

    let missing = swarm(&["service", "logs", "nosuch"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no such service or task: nosuch"),
        "{}",
        missing.stderr
    );
    swarm(&["service", "rm", "chatter"]).ok();
}

#[test]
fn service_exec_runs_in_a_task_on_another_node_with_its_stdin_and_exit_code() {
    let _lab = three_node_swarm("xdp");
    swarm(&["service", "rm", "chatter"]);
    let (id, _) = chatter_on_n2();

    // The command runs in the task's own container: what it writes there
    // is what the engine shows in that container.
    let r = swarm(&[
        "service",
        "exec",
        "chatter",
        "sh",
        "-c",
        "echo marker > /tmp/m; hostname",
    ])
    .ok();
    let container = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.task.id={id}"),
    ])
    .ok()
    .stdout
    .trim()
    .to_string();
    assert!(
        !container.is_empty(),
        "the task's container carries Docker's task label"
    );
    assert_eq!(
        docker(&["exec", &container, "cat", "/tmp/m"]).ok().stdout,
        "marker\n"
    );
    let hostname = docker(&["exec", &container, "hostname"]).ok().stdout;
    assert_eq!(r.stdout, hostname, "exec ran where the task runs");

    // The exit code, stderr, stdin (-i) and SERVICE.SLOT.
    let failed = swarm(&[
        "service",
        "exec",
        "chatter.1",
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    assert_eq!(failed.code, 3, "{failed:?}");
    assert_eq!(failed.stderr, "oops\n");
    let echoed = swarm_with_stdin(
        "n1",
        &["service", "exec", "-i", "chatter", "cat"],
        "hello\nworld\n",
    );
    assert_eq!(echoed.code, 0, "{echoed:?}");
    assert_eq!(
        echoed.stdout, "hello\nworld\n",
        "stdin reached the command and ended it"
    );

    // -t gives the command a terminal; `script` gives the CLI one.
    let cli = format!(
        "{} exec n1 {} service exec -t chatter sh -c 'tty; exit 4'",
        repo_root().join("scripts/lab.sh").display(),
        swarm_bin().display()
    );
    let tty = run(Command::new("script").args(["-qec", &cli, "/dev/null"]));
    assert_eq!(tty.code, 4, "{tty:?}");
    assert!(tty.stdout.contains("/dev/pts/"), "{tty:?}");

    // A command that is not there, a slot that is not there.
    let absent = swarm(&["service", "exec", "chatter", "no-such-command"]);
    assert_ne!(absent.code, 0, "{absent:?}");
    let slot = swarm(&["service", "exec", "chatter.7", "true"]);
    assert_ne!(slot.code, 0);
    assert!(
        slot.stderr
            .contains("service chatter has no running task in slot 7"),
        "{}",
        slot.stderr
    );

    // From a manager that does not lead: n3 promoted asks n1, the leader,
    // whose broker reaches n2's agent.
    swarm(&["node", "promote", "n3"]).ok();
    let from_n3 = wait_for("exec from the promoted n3", Duration::from_secs(60), || {
        let r = swarm_on("n3", &["service", "exec", "chatter", "echo", "via-n3"]);
        (r.code == 0).then_some(r)
    });
    assert_eq!(from_n3.stdout, "via-n3\n");
    let logs = swarm_on(
        "n3",
        &["service", "logs", "-n", "1", "--no-task-ids", "chatter"],
    )
    .ok();
    assert!(
        logs.stdout.starts_with("chatter.1@n2    | "),
        "{}",
        logs.stdout
    );
    swarm(&["node", "demote", "n3"]).ok();
    wait_for("n3 a worker again", Duration::from_secs(60), || {
        (swarm_on("n3", &["service", "ls"]).code != 0).then_some(())
    });
    swarm(&["service", "rm", "chatter"]).ok();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[test]
fn events_show_service_task_and_node_changes_with_dockers_fields_live_and_since() {
    let _lab = three_node_swarm("xdp");
    swarm(&["service", "rm", "evt"]);
    let since = unix_now().to_string();
    let until = (unix_now() + 120).to_string();
    let mut live = Command::new(repo_root().join("scripts/lab.sh"))
        .args(["exec", "n1", swarm_bin().to_str().expect("utf-8 path")])
        .args(["events", "--since", &since, "--until", &until])
        .args(["-f", "service=evt", "--format", "{{json .}}"])
        .env("SWARM_BIN", swarm_bin())
        .stdout(Stdio::piped())
        .spawn()
        .expect("lab.sh runs");
    let mut out = BufReader::new(live.stdout.take().expect("piped"));
    let mut seen = Vec::new();
    let mut next_event = |seen: &mut Vec<String>| {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).expect("reads") > 0,
            "the stream ended: {seen:?}"
        );
        let e: Value = serde_json::from_str(line.trim()).expect("a JSON event");
        seen.push(format!(
            "{} {}",
            e["Type"].as_str().unwrap(),
            e["Action"].as_str().unwrap()
        ));
        seen.last().cloned().unwrap()
    };
    swarm(&[
        "service",
        "create",
        "--detach",
        "--name",
        "evt",
        "swarm/whoami",
    ])
    .ok();
    assert_eq!(next_event(&mut seen), "service create");
    wait_for("evt running", Duration::from_secs(60), || {
        (running_tasks("evt").len() == 1).then_some(())
    });
    swarm(&["service", "scale", "--detach", "evt=2"]).ok();
    wait_for("two evt tasks running", Duration::from_secs(60), || {
        (running_tasks("evt").len() == 2).then_some(())
    });
    swarm(&["node", "update", "--availability", "pause", "n3"]).ok();
    swarm(&["node", "update", "--availability", "active", "n3"]).ok();
    swarm(&["service", "rm", "evt"]).ok();

    // Everything since the start, up to now: the command ends by itself.
    let history = wait_for(
        "the removal among the events",
        Duration::from_secs(10),
        || {
            let r = swarm(&[
                "events",
                "--since",
                &since,
                "--until",
                &unix_now().to_string(),
                "--format",
                "{{json .}}",
            ])
            .ok();
            r.stdout.contains("\"Action\":\"remove\"").then_some(r)
        },
    );
    let events: Vec<Value> = history.json_lines();
    let find = |kind: &str, action: &str, attr: &str, value: &str| {
        events.iter().find(|e| {
            e["Type"] == kind && e["Action"] == action && e["Actor"]["Attributes"][attr] == value
        })
    };
    let created = find("service", "create", "name", "evt").expect("service create");
    assert_eq!(created["scope"], "swarm");
    let t = created["time"].as_u64().expect("a time");
    assert!(
        t >= since.parse::<u64>().unwrap() && t <= unix_now(),
        "{created}"
    );
    assert_eq!(created["timeNano"].as_u64().unwrap() / 1_000_000_000, t);
    let scaled = find("service", "update", "replicas.new", "2").expect("the scale");
    assert_eq!(scaled["Actor"]["Attributes"]["replicas.old"], "1");
    assert_eq!(scaled["Actor"]["ID"], created["Actor"]["ID"]);
    assert!(
        find("task", "update", "state.new", "running").is_some(),
        "a task ran"
    );
    let paused = find("node", "update", "availability.new", "pause").expect("the pause");
    assert_eq!(paused["Actor"]["Attributes"]["name"], "n3");
    assert_eq!(paused["Actor"]["Attributes"]["availability.old"], "active");
    assert!(find("service", "remove", "name", "evt").is_some());

    // Filters, and docker's default line.
    let id = created["Actor"]["ID"].as_str().unwrap();
    let now = unix_now().to_string();
    let only = swarm(&[
        "events",
        "--since",
        &since,
        "--until",
        &now,
        "-f",
        "type=service",
        "-f",
        "event=create",
        "-f",
        "service=evt",
    ])
    .ok();
    let lines: Vec<&str> = only.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", only.stdout);
    let (time, rest) = lines[0].split_once(' ').expect("a time first");
    assert!(time.ends_with('Z') && time.len() == 30, "{time}");
    assert_eq!(rest, format!("service create {id} (name=evt)"));
    let bad = swarm(&["events", "-f", "colour=red"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("invalid filter 'colour'"),
        "{}",
        bad.stderr
    );

    // The follower, open since before these changes, saw each as it came.
    while next_event(&mut seen) != "service remove" {}
    live.kill().ok();
    live.wait().ok();
    assert!(seen.contains(&"service update".to_string()), "{seen:?}");
    assert!(
        seen.iter().all(|s| s.starts_with("service ")),
        "the filter held: {seen:?}"
    );
}

#[test]
fn swarm_check_on_a_joined_node_compares_its_clock_with_each_managers() {
    let _lab = three_node_swarm("xdp");
    let items = |node| -> Vec<Value> {
        let r = swarm_on(node, &["check", "--format", "json"]).ok();
        serde_json::from_str(&r.stdout).expect("check --format json is a JSON array")
    };
    let clock = |node| -> Vec<Value> {
        items(node)
            .into_iter()
            .filter(|i| i["check"] == "clock skew")
            .collect()
    };
    // The lab's nodes share the host's clock: no skew, a round trip apart.
    let on_worker = clock("n2");
    assert_eq!(on_worker.len(), 1, "one item per manager: {on_worker:?}");
    assert_eq!(on_worker[0]["status"], "ok", "{on_worker:?}");
    let detail = on_worker[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("manager 198.18.0.11:2377: "), "{detail}");
    let on_manager = clock("n1");
    assert_eq!(
        on_manager[0]["detail"],
        "this node is the only manager: no other clock to compare"
    );
}
