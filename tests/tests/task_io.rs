//! Task I/O across nodes in a three-node swarm (manager n1, workers n2 and
//! n3): `service logs` and `service exec` run on a manager reach a task on
//! another node through the leader's broker and that task's agent, also
//! from a manager that does not lead. Real daemons in netns, real Docker.

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
    follow.kill().ok();
    follow.wait().ok();
    assert_eq!(ticks, 3, "-f delivers new lines as they come");

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
