//! Single-manager swarm on a real Docker Engine: replicas, restarts, daemon
//! crash recovery, scaling, global mode, removal, and every bad input.

use serde_json::Value;
use std::time::Duration;
use swarm_tests::*;

const CONVERGE: Duration = Duration::from_secs(60);

fn app_containers(service: &str, running_only: bool) -> Vec<String> {
    containers(
        &[&format!("swarm.service.name={service}"), "swarm.role=task"],
        running_only,
    )
}

#[test]
fn three_replicas_give_three_running_containers_that_answer() {
    let _lab = single_node_swarm();
    let name = unique("three");
    let out = swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "3",
        "swarm/whoami",
    ])
    .ok();
    assert!(
        out.stdout.contains("overall progress: 3 out of 3 tasks"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("converged"), "{}", out.stdout);

    assert_eq!(running_tasks(&name).len(), 3);
    assert_eq!(app_containers(&name, true).len(), 3);
    // Each replica answers on its own address with its own hostname.
    let mut hostnames = Vec::new();
    for t in running_tasks(&name) {
        let addr = t["GatewayAddr"]
            .as_str()
            .expect("running task has an address");
        let body = lab(&[
            "exec",
            "n1",
            "curl",
            "-s",
            "-m",
            "5",
            &format!("http://{addr}/"),
        ])
        .ok()
        .stdout;
        let host = body.lines().next().unwrap_or("").to_string();
        assert!(
            host.starts_with(&format!("hostname: {name}-")),
            "unexpected answer {body:?}"
        );
        hostnames.push(host);
    }
    hostnames.sort();
    hostnames.dedup();
    assert_eq!(hostnames.len(), 3, "three distinct replicas answered");

    // Each container carries the labels Docker Swarm gives a task's
    // container, which tools that discover Swarm tasks read.
    let task = &running_tasks(&name)[0];
    let (task_id, slot) = (task["ID"].as_str().unwrap(), task["Slot"].as_u64().unwrap());
    let service_id = task["ServiceID"].as_str().unwrap();
    let container = &containers(
        &[&format!("swarm.task.id={task_id}"), "swarm.role=task"],
        true,
    )[0];
    let inspect = docker(&["inspect", "--format", "{{json .Config.Labels}}", container]).ok();
    let labels: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(labels["com.docker.swarm.service.name"], name.as_str());
    assert_eq!(labels["com.docker.swarm.service.id"], service_id);
    assert_eq!(labels["com.docker.swarm.task.id"], task_id);
    assert_eq!(
        labels["com.docker.swarm.task.name"],
        format!("{name}.{slot}.{task_id}").as_str()
    );
    assert_eq!(labels["com.docker.swarm.task"], "");
    assert!(
        labels["com.docker.swarm.node.id"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{labels}"
    );
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn killed_container_is_replaced_after_the_restart_delay_and_kept_in_history() {
    let _lab = single_node_swarm();
    let name = unique("restart");
    swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "2",
        "--restart-delay",
        "3s",
        "swarm/whoami",
    ])
    .ok();
    let victim = running_tasks(&name)[0].clone();
    let victim_id = victim["ID"].as_str().unwrap().to_string();
    let container = victim["ContainerID"].as_str().unwrap().to_string();
    docker(&["kill", &container]).ok();

    // The dead task shows as failed with Docker's exit code...
    let failed = wait_for("the killed task to be reported failed", CONVERGE, || {
        tasks(&name).into_iter().find(|t| {
            t["ID"] == victim_id.as_str()
                && t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Failed")
        })
    });
    assert!(
        failed["Error"]
            .as_str()
            .unwrap()
            .contains("non-zero exit (137)"),
        "{failed}"
    );
    assert_eq!(failed["DesiredState"], "Shutdown");
    // ...and its slot does not run again before the delay has passed.
    let slot = victim["Slot"].as_u64().unwrap();
    let replacement_running = || {
        running_tasks(&name)
            .into_iter()
            .find(|t| t["Slot"] == slot && t["ID"] != victim_id.as_str())
    };
    holds_for(
        "no replacement before the 3s restart delay",
        Duration::from_millis(1500),
        || replacement_running().is_none(),
    );
    let replacement = wait_for(
        "a replacement task in the slot",
        CONVERGE,
        replacement_running,
    );
    assert_ne!(replacement["ContainerID"], victim["ContainerID"]);
    assert_eq!(running_tasks(&name).len(), 2);
    // History keeps the dead task under the same slot.
    let history: Vec<_> = tasks(&name)
        .into_iter()
        .filter(|t| t["Slot"] == slot)
        .collect();
    assert_eq!(history.len(), 2, "{history:?}");
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn daemon_kill_9_and_restart_keeps_services_and_never_duplicates_containers() {
    let _lab = single_node_swarm();
    let a = unique("survive-a");
    let b = unique("survive-g");
    swarm(&[
        "service",
        "create",
        "--name",
        &a,
        "--replicas",
        "3",
        "swarm/whoami",
    ])
    .ok();
    swarm(&[
        "service",
        "create",
        "--name",
        &b,
        "--mode",
        "global",
        "swarm/whoami",
    ])
    .ok();
    let before_tasks: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|s| running_tasks(s))
        .map(|t| t["ID"].clone())
        .collect();
    let before_containers = [app_containers(&a, true), app_containers(&b, true)].concat();
    assert_eq!(before_containers.len(), 4);

    lab(&["kill", "n1"]).ok();
    lab(&["start", "n1"]).ok();

    let ls = swarm(&["service", "ls", "--format", "json"])
        .ok()
        .json_lines();
    for s in [&a, &b] {
        assert!(
            ls.iter().any(|x| x["Name"] == s.as_str()),
            "service {s} lost after restart: {ls:?}"
        );
    }
    // The restarted agent resyncs within seconds; it must adopt what runs,
    // never recreate it.
    let mut before_sorted = before_containers.clone();
    before_sorted.sort();
    holds_for(
        "the original containers, and only them",
        Duration::from_secs(5),
        || {
            let mut now = [app_containers(&a, false), app_containers(&b, false)].concat();
            now.sort();
            now == before_sorted
        },
    );
    let after_tasks: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|s| running_tasks(s))
        .map(|t| t["ID"].clone())
        .collect();
    assert_eq!(
        before_tasks, after_tasks,
        "same tasks running after the restart"
    );
    swarm(&["service", "rm", &a, &b]).ok();
}

#[test]
fn scaling_three_to_five_to_one() {
    let _lab = single_node_swarm();
    let name = unique("scale");
    swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "3",
        "swarm/whoami",
    ])
    .ok();
    for n in [5usize, 1] {
        let out = swarm(&["service", "scale", &format!("{name}={n}")]).ok();
        assert!(
            out.stdout
                .contains(&format!("overall progress: {n} out of {n} tasks")),
            "{}",
            out.stdout
        );
        assert_eq!(running_tasks(&name).len(), n);
        let slots: Vec<u64> = running_tasks(&name)
            .iter()
            .map(|t| t["Slot"].as_u64().unwrap())
            .collect();
        assert!(
            slots.iter().all(|s| (1..=n as u64).contains(s)),
            "slots {slots:?}"
        );
        wait_for(&format!("{n} containers"), CONVERGE, || {
            (app_containers(&name, true).len() == n).then_some(())
        });
    }
    let ls = swarm(&["service", "ls", "--format", "json"])
        .ok()
        .json_lines();
    let row = ls.iter().find(|x| x["Name"] == name.as_str()).unwrap();
    assert_eq!(row["Replicas"], "1/1");
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn global_service_on_one_node_runs_one_task() {
    let _lab = single_node_swarm();
    let name = unique("global");
    swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--mode",
        "global",
        "swarm/whoami",
    ])
    .ok();
    let running = running_tasks(&name);
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["Node"], "n1");
    assert_eq!(app_containers(&name, true).len(), 1);
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn rm_leaves_no_container_behind() {
    let _lab = single_node_swarm();
    let name = unique("rm");
    swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "2",
        "swarm/whoami",
    ])
    .ok();
    let label = format!("swarm.service.name={name}");
    assert_eq!(
        containers(&[&label], false).len(),
        4,
        "two tasks, each an app and a pause container"
    );
    let out = swarm(&["service", "rm", &name]).ok();
    assert_eq!(out.stdout.trim(), name);
    wait_for(
        "every container of the service to be removed",
        CONVERGE,
        || containers(&[&label], false).is_empty().then_some(()),
    );
    let ps = swarm(&["service", "ps", &name]);
    assert_ne!(ps.code, 0);
    assert!(ps.stderr.contains("not found"), "{ps:?}");
}

#[test]
fn unknown_image_is_rejected_with_dockers_reason() {
    let _lab = single_node_swarm();
    let name = unique("noimage");
    let out = swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "no-such-image-here:1.0",
    ]);
    assert_ne!(out.code, 0, "create must fail: {out:?}");
    // The agent tries to pull it (no registry is reachable here) and
    // rejects the task with Docker's reason.
    assert!(
        out.stderr.contains("rejected")
            && out
                .stderr
                .contains("pulling image no-such-image-here:1.0: "),
        "{out:?}"
    );
    let ps = swarm(&["service", "ps", &name, "--no-trunc"]).ok();
    assert!(ps.stdout.contains("Rejected"), "{}", ps.stdout);
    assert!(
        ps.stdout.contains("pulling image no-such-image-here:1.0: "),
        "{}",
        ps.stdout
    );
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn bad_inputs_fail_clearly_and_change_nothing() {
    let _lab = single_node_swarm();
    let name = unique("dup");
    swarm(&["service", "create", "--name", &name, "-d", "swarm/whoami"]).ok();
    let services_before = swarm(&["service", "ls", "-q"]).ok().stdout;

    let dup = swarm(&["service", "create", "--name", &name, "swarm/whoami"]);
    assert_ne!(dup.code, 0);
    assert!(
        dup.stderr
            .contains(&format!("service name \"{name}\" is already in use")),
        "{dup:?}"
    );

    let nan = swarm(&[
        "service",
        "create",
        "--name",
        "nan",
        "--replicas",
        "three",
        "swarm/whoami",
    ]);
    assert_ne!(nan.code, 0);
    assert!(
        nan.stderr.contains("--replicas") && nan.stderr.contains("three"),
        "{nan:?}"
    );

    let nan_scale = swarm(&["service", "scale", &format!("{name}=lots")]);
    assert_ne!(nan_scale.code, 0);
    assert!(
        nan_scale.stderr.contains("invalid replicas value \"lots\""),
        "{nan_scale:?}"
    );

    let g = unique("glob");
    swarm(&[
        "service",
        "create",
        "--name",
        &g,
        "--mode",
        "global",
        "-d",
        "swarm/whoami",
    ])
    .ok();
    let scale_global = swarm(&["service", "scale", &format!("{g}=3")]);
    assert_ne!(scale_global.code, 0);
    assert!(
        scale_global
            .stderr
            .contains("scale can only be used with replicated mode"),
        "{scale_global:?}"
    );

    for args in [
        vec!["service", "ps", "ghost-service"],
        vec!["service", "inspect", "ghost-service"],
        vec!["service", "rm", "ghost-service"],
        vec!["service", "scale", "ghost-service=2"],
    ] {
        let r = swarm(&args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(
            r.stderr.contains("ghost-service") && r.stderr.contains("not found"),
            "{args:?}: {r:?}"
        );
    }

    // Nothing above created or removed a service (the global one aside).
    let services_after: Vec<String> = swarm(&["service", "ls", "-q"])
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    for s in services_before.lines() {
        assert!(services_after.contains(&s.to_string()));
    }
    assert_eq!(services_after.len(), services_before.lines().count() + 1);
    swarm(&["service", "rm", &name, &g]).ok();

    // With no daemon behind the socket, the error says how to start one.
    let down = run(std::process::Command::new(swarm_bin()).args([
        "-H",
        "unix:///run/swarm-lab/absent.sock",
        "service",
        "ls",
    ]));
    assert_ne!(down.code, 0);
    assert!(
        down.stderr.contains("Is the daemon running?") && down.stderr.contains("swarm daemon"),
        "{down:?}"
    );
}

#[test]
fn scaling_past_the_replica_limit_is_refused_by_name() {
    let _lab = single_node_swarm();
    let name = unique("huge");
    swarm(&["service", "create", "--name", &name, "-d", "swarm/whoami"]).ok();
    let r = swarm(&["service", "scale", &format!("{name}=1000000000000")]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "service {name}: 1000000000000 replicas, more than the limit of 100000 per service"
        )),
        "{r:?}"
    );
    let negative = swarm(&[
        "service",
        "create",
        "--reserve-memory",
        "-5",
        "swarm/whoami",
    ]);
    assert_ne!(negative.code, 0, "{negative:?}");
    let ssh = swarm(&["service", "create", "-d", "-p", "22:22", "swarm/whoami"]);
    assert_ne!(ssh.code, 0);
    assert!(ssh.stderr.contains("force=true"), "{ssh:?}");
    // The manager still answers and the service is as it was.
    let svc = swarm(&["service", "ls", "--format", "json"])
        .ok()
        .json_lines();
    let me = svc.iter().find(|s| s["Name"] == name.as_str()).unwrap();
    assert!(
        me["Replicas"].as_str().unwrap().ends_with("/1"),
        "still one replica wanted: {me}"
    );
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn the_data_directory_and_the_socket_are_private_to_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let _lab = single_node_swarm();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = std::path::Path::new("/var/lib/swarm-lab/n1");
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut seen = 0;
    for sub in [dir.to_path_buf(), dir.join("certs")] {
        for e in std::fs::read_dir(&sub).unwrap().flatten() {
            let p = e.path();
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&p), want, "{}", p.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 6,
        "raft.redb, node.json, secrets.key, certs/...: {seen}"
    );
    let socket = std::path::Path::new("/run/swarm-lab/n1.sock");
    assert_eq!(mode(socket), 0o600);

    // Widened by mistake, the socket still lets in only root (or the
    // daemon's user, or --socket-group): the daemon checks the caller.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stranger = run(std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(swarm_bin())
        .args(["-H", "unix:///run/swarm-lab/n1.sock", "info"]));
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(stranger.code, 0, "{stranger:?}");
    assert!(
        stranger
            .stderr
            .contains("uid 65534 may not use this daemon's control socket"),
        "{}",
        stranger.stderr
    );
    assert_eq!(swarm(&["info"]).code, 0, "root still may");
}

/// `swarm check` items as (check, status) pairs.
fn check_items(out: &Run) -> Vec<(String, String)> {
    let items: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    items
        .as_array()
        .expect("a list of items")
        .iter()
        .map(|i| {
            (
                i["check"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_host_check_passes_here_and_names_the_fix_when_bpffs_is_missing() {
    require_lab_prerequisites();
    let ok = run(std::process::Command::new(swarm_bin()).args(["check", "--format", "json"]));
    assert_eq!(ok.code, 0, "{ok:?}");
    let items = check_items(&ok);
    for want in [
        "kernel",
        "bpffs",
        "capabilities",
        "iptables",
        "ip_forward",
        "docker",
    ] {
        assert!(
            items.contains(&(want.to_string(), "ok".to_string())),
            "{want} is not ok: {items:?}"
        );
    }
    assert!(items.iter().all(|(_, s)| s != "fail"), "{items:?}");

    // In a mount namespace of its own, with both of the host's bpffs
    // mounts gone, the check fails and names the fix, and the daemon
    // refuses to start, before it makes its socket.
    let without_bpffs = |cmd: &str| {
        let script = format!(
            "umount /sys/fs/bpf 2>/dev/null; umount /run/swarm/bpffs 2>/dev/null; exec {} {cmd}",
            swarm_bin().display()
        );
        run(std::process::Command::new("unshare").args(["-m", "sh", "-c", &script]))
    };
    let bad = without_bpffs("check");
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stdout.contains("fail  bpffs"), "{bad:?}");
    assert!(
        bad.stdout.contains("fix: mount -t bpf bpffs /sys/fs/bpf"),
        "{bad:?}"
    );
    assert!(bad.stderr.contains("fix the items marked fail"), "{bad:?}");
    let dir = std::env::temp_dir().join(unique("preflight"));
    let sock = dir.join("swarm.sock");
    let daemon = without_bpffs(&format!(
        "daemon --data-dir {} --socket {}",
        dir.display(),
        sock.display()
    ));
    assert_ne!(daemon.code, 0, "{daemon:?}");
    assert!(
        daemon.stderr.contains("this host is not ready") && daemon.stderr.contains("bpffs"),
        "{daemon:?}"
    );
    assert!(!sock.exists(), "the daemon made its socket before refusing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_names_client_and_daemon_and_info_counts_the_swarm() {
    let _lab = single_node_swarm();
    let v = &swarm(&["version", "--format", "json"]).ok().json_lines()[0];
    let commit = v["Client"]["GitCommit"].as_str().unwrap();
    assert!(!commit.is_empty() && commit != "unknown", "{v}");
    // One binary here: the daemon is the same build as the client.
    assert_eq!(v["Server"]["Version"], v["Client"]["Version"], "{v}");
    assert_eq!(v["Server"]["GitCommit"], commit, "{v}");
    assert!(
        ["xdp", "iptables"].contains(&v["Server"]["Dataplane"].as_str().unwrap_or("")),
        "{v}"
    );
    let text = swarm(&["version"]).ok().stdout;
    assert!(
        text.starts_with("Client:\n Version:    ")
            && text.contains("\nServer:\n")
            && text.contains(" Data plane: "),
        "{text}"
    );

    let i = &swarm(&["info", "--format", "json"]).ok().json_lines()[0];
    assert_eq!(i["Nodes"], 1, "{i}");
    assert_eq!(i["Managers"], 1, "{i}");
    // The root CA lives for years: its expiry is a date well ahead.
    let expiry = i["CAExpiry"].as_str().unwrap_or_default();
    let year: i32 = expiry.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    assert!(expiry.len() == 10 && year >= 2030, "{i}");
    assert!(i["Autolock"].is_boolean(), "{i}");
}

#[test]
fn the_daemon_logs_one_json_object_per_line_when_asked() {
    require_lab_prerequisites();
    let dir = std::env::temp_dir().join(unique("jsonlog"));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("swarm.sock");
    let out = std::fs::File::create(dir.join("out")).unwrap();
    let mut daemon = std::process::Command::new(swarm_bin())
        .args(["daemon", "--log-format", "json", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(&sock)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    // It logs as it opens its control socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let listening = loop {
        let text = std::fs::read_to_string(dir.join("out")).unwrap_or_default();
        if text.contains("control API listening") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    let lines: Vec<&str> = listening.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"control API listening\"")),
        "{listening}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn filters_pick_and_templates_print_services_nodes_and_tasks_as_docker_s_do() {
    let _lab = single_node_swarm();
    let web = unique("flt-web");
    let db = unique("flt-db");
    swarm(&[
        "service",
        "create",
        "--name",
        &web,
        "--replicas",
        "2",
        "--label",
        "tier=front",
        "swarm/whoami",
    ])
    .ok();
    swarm(&[
        "service",
        "create",
        "--name",
        &db,
        "--mode",
        "global",
        "swarm/whoami",
    ])
    .ok();
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["service", "ls", "--format", "json"];
        a.extend_from_slice(args);
        swarm(&a)
            .ok()
            .json_lines()
            .iter()
            .map(|s| s["Name"].as_str().unwrap().to_string())
            .filter(|n| n == &web || n == &db)
            .collect()
    };
    assert_eq!(
        names(&["--filter", &format!("name={web}")]),
        vec![web.as_str()]
    );
    // A prefix, as docker matches names; two values of one key are either.
    assert_eq!(
        names(&["-f", "name=flt-", "-f", "mode=global"]),
        vec![db.as_str()]
    );
    assert_eq!(
        names(&["-f", &format!("name={web}"), "-f", &format!("name={db}")]).len(),
        2
    );
    assert_eq!(names(&["-f", "label=tier=front"]), vec![web.as_str()]);
    assert!(names(&["-f", "label=tier=back"]).is_empty());

    let me = swarm(&["node", "ls", "-q"]).ok().stdout;
    assert_eq!(
        swarm(&["node", "ls", "-q", "-f", "role=manager"])
            .ok()
            .stdout,
        me
    );
    assert_eq!(
        swarm(&["node", "ls", "-q", "-f", "role=worker"])
            .ok()
            .stdout,
        ""
    );

    let running = swarm(&["service", "ps", &web, "-q", "-f", "desired-state=running"])
        .ok()
        .stdout;
    assert_eq!(running.lines().count(), 2, "{running}");
    let one = swarm(&[
        "service",
        "ps",
        &web,
        "--format",
        "json",
        "-f",
        &format!("name={web}.1"),
    ])
    .ok();
    let rows = one.json_lines();
    assert_eq!(rows.len(), 1, "{}", one.stdout);
    assert_eq!(rows[0]["Name"], format!("{web}.1").as_str());

    let bad = swarm(&["service", "ls", "-f", "colour=red"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("invalid filter 'colour'"), "{bad:?}");

    // Go templates, as docker takes them (tests/tests/format.rs holds the
    // engine against docker's own).
    let line = swarm(&[
        "service",
        "ls",
        "-f",
        &format!("name={web}"),
        "--format",
        "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image | upper}}",
    ])
    .ok()
    .stdout;
    assert_eq!(line, format!("{web} replicated 2/2 SWARM/WHOAMI\n"));
    let table = swarm(&[
        "service",
        "ps",
        &web,
        "-f",
        "desired-state=running",
        "--format",
        r"table {{.Name}}\t{{.DesiredState}}",
    ])
    .ok()
    .stdout;
    let width = web.len() + 2 + 3;
    let expected = format!(
        "{:<width$}DESIRED STATE\n{web}.1{:<3}Running\n{web}.2{:<3}Running\n",
        "NAME", "", ""
    );
    assert_eq!(table, expected);
    let inspected = swarm(&["service", "inspect", &web, "--format", "{{.Spec.Name}}"])
        .ok()
        .stdout;
    assert_eq!(inspected, format!("{web}\n"));
    let typo = swarm(&["service", "ls", "--format", "{{.Nmae}}"]);
    assert!(typo.code != 0 && typo.stderr.contains("Nmae"), "{typo:?}");
    let broken = swarm(&["node", "ls", "--format", "{{.Hostname"]);
    assert!(
        broken.code != 0 && broken.stderr.contains("--format"),
        "{broken:?}"
    );
    swarm(&["service", "rm", &web, &db]).ok();
}

/// The pause image's digest label and entrypoint, or None when Docker
/// has no such image.
fn pause_image_digest() -> Option<String> {
    let r = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"swarm.pause.digest\"}} {{json .Config.Entrypoint}}",
        "swarm/pause:latest",
    ]);
    (r.code == 0).then(|| r.stdout.trim().to_string())
}

#[test]
fn the_daemon_imports_the_pause_image_it_carries_when_docker_lacks_it_or_has_another() {
    let _lab = single_node_swarm();
    let carried = pause_image_digest().expect("imported when the lab's daemon started");
    let (digest, entrypoint) = carried.split_once(' ').unwrap();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{carried}"
    );
    assert_eq!(entrypoint, r#"["/pause"]"#);

    // Removed (running sandboxes keep their image, only the name goes):
    // the next task brings it back.
    docker(&["rmi", "-f", "swarm/pause:latest"]).ok();
    assert_eq!(pause_image_digest(), None);
    let name = unique("pause");
    swarm(&["service", "create", "--name", &name, "swarm/whoami"]).ok();
    assert_eq!(running_tasks(&name).len(), 1);
    assert_eq!(pause_image_digest().as_deref(), Some(carried.as_str()));

    // Another image under the name (an older build's, say) is replaced.
    docker(&["tag", "swarm/whoami:latest", "swarm/pause:latest"]).ok();
    swarm(&["service", "scale", &format!("{name}=2")]).ok();
    wait_for("the second task to run", CONVERGE, || {
        (running_tasks(&name).len() == 2).then_some(())
    });
    assert_eq!(pause_image_digest().as_deref(), Some(carried.as_str()));

    // It does what PID 1 must: ends on SIGTERM, with exit code 0 (ignoring
    // it would mean SIGKILL after the stop timeout: 137).
    let c = docker(&["run", "-d", "--network", "none", "swarm/pause:latest"])
        .ok()
        .stdout;
    let c = c.trim();
    docker(&["stop", "-t", "30", c]).ok();
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", c])
        .ok()
        .stdout;
    docker(&["rm", c]).ok();
    assert_eq!(code.trim(), "0");
    swarm(&["service", "rm", &name]).ok();
}

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_and_when_it_stops() {
    require_lab_prerequisites();
    let dir = std::env::temp_dir().join(unique("notify"));
    std::fs::create_dir_all(&dir).unwrap();
    // systemd's side of Type=notify: a datagram socket named by NOTIFY_SOCKET.
    let notify = std::os::unix::net::UnixDatagram::bind(dir.join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut daemon = std::process::Command::new(swarm_bin())
        .args(["daemon", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(dir.join("swarm.sock"))
        .env("NOTIFY_SOCKET", dir.join("notify"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    // Ready means the control API answers.
    let info = swarm_on_socket(&dir.join("swarm.sock"), &["info", "--format", "json"]);
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = next();
    let status = daemon.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ready, "READY=1\n");
    assert_eq!(info.code, 0, "{info:?}");
    assert_eq!(stopping, "STOPPING=1\n");
    assert!(status.success(), "{status:?}");
}

/// The CLI against the daemon listening on `socket`.
fn swarm_on_socket(socket: &std::path::Path, args: &[&str]) -> Run {
    run(std::process::Command::new(swarm_bin())
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args))
}
