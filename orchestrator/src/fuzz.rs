//! Fuzz target bodies for what the orchestrator reads from outside: raft
//! commands, join requests and their CSRs, join tokens, `--publish`,
//! `--constraint` and durations. Each takes the fuzzer's bytes and checks a
//! property that could be false, not only that nothing panics.
//!
//! `fuzz/` drives them: libFuzzer through cargo-fuzz (`scripts/fuzz.sh`),
//! and a corpus test that replays every committed input in each test run.

use crate::api::cluster_pb::JoinRequest;
use crate::cluster::{assign_node_id, joined_node};
use crate::pki::token::JoinToken;
use crate::pki::{pem_to_der, Identity, RootCa};
use crate::placement::Constraint;
use crate::raft::state_machine::model;
use crate::state::{Command, State};
use crate::types::NodeRole;
use std::sync::OnceLock;
use std::time::Duration;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Commands, one JSON object per line, applied in order from an empty
/// state. Whatever they are:
/// - a refused command (other than a batch or a partial refusal, whose
///   parts answer one by one) leaves the state as it was, apart from the
///   request it is remembered under;
/// - the objects the store writes for each command load back as the state
///   in memory, indexes included: a restart changes nothing;
/// - a snapshot of the state (its JSON) loads back as the same state.
pub fn state_apply(data: &[u8]) {
    let mut state = State::default();
    let mut objects = model::objects_of(&state);
    for line in data.split(|b| *b == b'\n') {
        let Ok(cmd) = serde_json::from_slice::<Command>(line) else {
            continue;
        };
        let before = state.clone();
        let parts_answer = matches!(cmd, Command::Batch(_));
        let (response, next) = model::apply_to_objects(&mut state, cmd, objects);
        objects = next;
        let refused = response.error.as_ref().filter(|r| !r.is_partial());
        if let (Some(why), false) = (refused, parts_answer) {
            let mut unchanged = state.clone();
            unchanged.requests = before.requests.clone();
            assert!(
                unchanged == before,
                "a refused command changed the state ({why})"
            );
        }
    }
    let expected = model::objects_of(&state);
    let differ = expected
        .keys()
        .chain(objects.keys())
        .find(|k| expected.get(*k) != objects.get(*k));
    assert!(
        differ.is_none(),
        "the store wrote {differ:?} differently from the state in memory"
    );
    let reloaded = model::load(&objects).expect("the stored objects load");
    assert!(
        reloaded == state,
        "the stored objects do not load back as the state in memory"
    );
    let json = serde_json::to_vec(&state).expect("a state serializes");
    let mut snapshot: State = serde_json::from_slice(&json).expect("a snapshot loads");
    snapshot.reindex();
    assert!(
        snapshot == state,
        "a snapshot does not load back as the state"
    );
}

/// A CA and a swarm with one manager, made once per fuzzing process.
struct Swarm {
    ca: RootCa,
    state: State,
}

fn swarm() -> &'static Swarm {
    static SWARM: OnceLock<Swarm> = OnceLock::new();
    SWARM.get_or_init(|| {
        let mut state = State::default();
        let manager = joined_node(
            &JoinRequest::default(),
            "manager1".into(),
            NodeRole::Manager,
            0,
        );
        state.apply(Command::PutNode(manager));
        Swarm {
            ca: RootCa::create("fuzz").expect("a CA"),
            state,
        }
    })
}

/// A `Join` call's body (protobuf), as the CA handles it once the secret
/// matched: the CSR is signed only for the ID and role the CA chose, and
/// the record of the joiner is accepted whatever it says about itself.
pub fn join_request(data: &[u8]) {
    use prost::Message;
    let Ok(req) = JoinRequest::decode(data) else {
        return;
    };
    let swarm = swarm();
    let id = assign_node_id(&swarm.state);
    if let Ok(pem) = swarm.ca.issue(
        &req.csr_pem,
        &id,
        NodeRole::Worker,
        "fuzz",
        Duration::from_secs(3600),
    ) {
        let der = pem_to_der(&pem, "the issued certificate").expect("the CA's output is PEM");
        let who = Identity::of(&der).expect("the CA's certificate has an identity");
        assert_eq!(who.node_id, id, "the certificate names the CA's ID");
        assert_eq!(
            who.role,
            NodeRole::Worker,
            "the certificate names the CA's role"
        );
    }
    let mut state = swarm.state.clone();
    let node = joined_node(&req, id.clone(), NodeRole::Worker, 0);
    let response = state.apply(Command::PutNode(node));
    assert_eq!(response.error, None, "a joiner's record is refused");
    assert_eq!(state.nodes[&id].role, NodeRole::Worker);
}

/// A CSR as PEM text, signed directly: the CA never signs what it cannot
/// parse, and what it signs carries its own identity.
pub fn csr(data: &[u8]) {
    let Some(pem) = text(data) else { return };
    let swarm = swarm();
    if let Ok(cert) = swarm.ca.issue(
        pem,
        "node1",
        NodeRole::Manager,
        "fuzz",
        Duration::from_secs(60),
    ) {
        let der = pem_to_der(&cert, "the issued certificate").expect("the CA's output is PEM");
        let who = Identity::of(&der).expect("the CA's certificate has an identity");
        assert_eq!(
            (who.node_id.as_str(), who.role),
            ("node1", NodeRole::Manager)
        );
    }
}

/// A join token: one that parses prints as itself and parses again.
pub fn token(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(t) = JoinToken::parse(s) {
        let again = JoinToken::parse(&t.to_string()).expect("a printed token parses");
        assert!(again == t, "a token changed through printing");
    }
}

/// A `--publish` value: a parsed port is a real one, and its long form
/// reads back as the same port.
pub fn publish(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(p) = crate::ports::parse(s) else {
        return;
    };
    assert!(p.target > 0, "a parsed port targets port 0");
    let long = format!(
        "published={},target={},protocol={},mode={}",
        p.published,
        p.target,
        p.protocol.name(),
        p.mode.name()
    );
    match crate::ports::parse(&long) {
        Ok(again) => assert_eq!(again, p, "{s:?} and {long:?} differ"),
        // The long form has no "any port" published=0: Docker's neither.
        Err(_) => assert_eq!(p.published, 0, "{long:?} (from {s:?}) does not parse"),
    }
}

/// A `--constraint` expression: `==` and `!=` on the same attribute and
/// value judge every node oppositely. (Flipped only where the operator is
/// unambiguous: with two, the value or a label name holds the other.)
pub fn constraint(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(c) = Constraint::parse(s) else { return };
    if s.matches("!=").count() + s.matches("==").count() != 1 {
        return;
    }
    let flipped = if s.contains("!=") {
        s.replacen("!=", "==", 1)
    } else {
        s.replacen("==", "!=", 1)
    };
    let Ok(opposite) = Constraint::parse(&flipped) else {
        return;
    };
    // Flipping "!!=" makes "!==", which holds a new "!=".
    if flipped.matches("!=").count() + flipped.matches("==").count() != 1 {
        return;
    }
    for node in swarm().state.nodes.values() {
        assert_ne!(
            c.matches(node),
            opposite.matches(node),
            "{s:?} and {flipped:?}"
        );
    }
}

/// A duration flag: one that parses is not negative, and Go's printing of
/// it parses back to the same length.
pub fn duration(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(d) = crate::cli::format::parse_duration(s) else {
        return;
    };
    let ns = i64::try_from(d.as_nanos()).expect("a parsed duration fits Go's range");
    let printed = swarm_compose::go_duration(ns);
    let again = crate::cli::format::parse_duration(&printed).expect("a printed duration parses");
    assert_eq!(again, d, "{s:?} printed as {printed:?}");
}

/// A compose file, as `swarm deploy` reads it: loading it either fails
/// with a FILE:LINE:COLUMN error or gives a document that prints (as
/// `swarm stack config` does) into a file that loads back as the same
/// document; and a document converts to a stack or says why not.
pub fn compose(data: &[u8]) {
    use swarm_compose::{emit, load, Options};
    let Some(text) = text(data) else { return };
    let dir = scratch_dir();
    let file = dir.join("docker-compose.yml");
    std::fs::write(&file, text).expect("writing the scratch compose file");
    let doc = match load(std::slice::from_ref(&file), &Options::default()) {
        Ok(doc) => doc,
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with(&file.display().to_string()),
                "an error that does not name the file: {shown}"
            );
            return;
        }
    };
    let printed = emit::yaml(&doc);
    let again_file = dir.join("printed.yml");
    std::fs::write(&again_file, &printed).expect("writing the printed compose file");
    // Printed values are already interpolated: read them as they are.
    let opts = Options {
        skip_interpolation: true,
    };
    let again = load(std::slice::from_ref(&again_file), &opts)
        .unwrap_or_else(|e| panic!("the printed document does not load: {e}\n{printed}"));
    assert!(
        again == doc,
        "the printed document loads differently:\n{printed}"
    );
    let _ = crate::stack::convert("fuzz", &doc);
}

/// A directory of this process's own for the compose target's files.
fn scratch_dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("swarm-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        dir
    })
}

/// The seeds made of real values: `cargo test -p swarm-orchestrator --
/// --ignored write_seeds` (re)writes them into `fuzz/corpus/`.
#[cfg(test)]
mod seeds {
    use super::*;
    use crate::manager::testutil::{init_cluster, node, service, task};
    use crate::state::TaskAllocation;
    use crate::types::*;
    use prost::Message;

    fn write(target: &str, name: &str, data: &[u8]) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }

    fn lines(cmds: &[Command]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            out.extend(serde_json::to_vec(c).unwrap());
            out.push(b'\n');
        }
        out
    }

    #[test]
    #[ignore = "writes the seed corpus; run by hand"]
    fn write_seeds() {
        let mut svc = service("s1", Mode::Replicated, 2);
        svc.spec.ports = vec![crate::ports::parse("8080:80").unwrap()];
        svc.spec.networks = vec![NetworkAttachmentSpec {
            target: "back".into(),
            aliases: vec!["web".into()],
        }];
        let (t1, t2) = (
            task("t1", &svc, 1, TaskState::New),
            task("t2", &svc, 2, TaskState::New),
        );
        let mut worker = node("n2");
        worker.role = NodeRole::Worker;
        let network = NetworkSpec {
            name: "back".into(),
            driver: "overlay".into(),
            subnet: None,
            gateway: None,
            attachable: false,
            internal: false,
            ingress: false,
            labels: Default::default(),
        };
        let mut updated = svc.clone();
        updated.spec.replicas = 3;
        write(
            "state_apply",
            "lifecycle",
            &lines(&[
                init_cluster(),
                Command::PutNode(worker.clone()),
                Command::CreateNetwork {
                    id: "net1".into(),
                    spec: network,
                    at: 2,
                },
                Command::CreateService(svc.clone()),
                Command::CreateTasks(vec![t1.clone(), t2.clone()]),
                Command::AllocateService {
                    id: "s1".into(),
                    vips: vec![Attachment {
                        network_id: "net1".into(),
                        addr: "10.0.1.2".parse().unwrap(),
                    }],
                },
                Command::AllocateTasks(vec![TaskAllocation {
                    task_id: "t1".into(),
                    result: Ok(vec![Attachment {
                        network_id: "net1".into(),
                        addr: "10.0.1.3".parse().unwrap(),
                    }]),
                    at: 3,
                }]),
                Command::Assign(vec![crate::state::Assignment {
                    task_id: "t1".into(),
                    node_id: Some("n2".into()),
                    message: String::new(),
                    at: 4,
                }]),
                Command::UpdateStatus(vec![(
                    "t1".into(),
                    TaskStatus::new(TaskState::Running, "up"),
                )]),
                Command::UpdateService {
                    service: updated,
                    expected_version: 1,
                },
                Command::SetDesiredState {
                    ids: vec!["t2".into()],
                    state: TaskState::Shutdown,
                },
                Command::DeleteTasks(vec!["t2".into()]),
                Command::SetNodeState {
                    id: "n2".into(),
                    state: NodeState::Down,
                    at: 5,
                },
                Command::RemoveService { id: "s1".into() },
                Command::RemoveNetwork { id: "net1".into() },
                Command::RemoveNode { id: "n2".into() },
                Command::PutNode(worker),
            ]),
        );
        let secret = Secret {
            id: "x1".into(),
            kind: SecretKind::Secret,
            name: "db".into(),
            labels: Default::default(),
            versions: vec![SecretVersion {
                version: 1,
                created_at: 1,
                data: b"sealed".to_vec(),
            }],
            meta: Meta::default(),
        };
        let request = |id: &str, cmd: Command| Command::Request {
            id: id.into(),
            cmd: Box::new(cmd),
        };
        write(
            "state_apply",
            "requests-and-batches",
            &lines(&[
                init_cluster(),
                request("r1", Command::CreateService(svc.clone())),
                request("r1", Command::CreateService(svc.clone())),
                Command::Batch(vec![
                    Command::CreateSecret(secret.clone()),
                    Command::CreateSecret(secret.clone()),
                ]),
                Command::Atomic(vec![
                    Command::RemoveSecret { id: "x1".into() },
                    Command::RemoveService { id: "nope".into() },
                ]),
                Command::UpdateSecret {
                    id: "x1".into(),
                    version: SecretVersion {
                        version: 2,
                        created_at: 2,
                        data: b"sealed2".to_vec(),
                    },
                },
                Command::SetUnlockKey(Some(Sealed(b"u".to_vec()))),
                Command::SetJoinSecret {
                    role: NodeRole::Worker,
                    secret: Sealed(b"w2".to_vec()),
                },
                Command::UpdateNode {
                    id: "n1".into(),
                    expected_version: 1,
                    availability: Availability::Drain,
                    labels: [("zone".to_string(), "a".to_string())].into(),
                    role: NodeRole::Manager,
                },
            ]),
        );
        let rotation = CaRotation {
            name: "swarm-ca 0a1b2c3d".into(),
            ca_cert_pem: "NEW".into(),
            ca_key: Sealed(b"new".to_vec()),
            cross_signed_pem: "CROSS".into(),
            renewed: Default::default(),
        };
        let renewed = |node: &str| Command::CaRenewed {
            node: node.into(),
            issuer: "swarm-ca 0a1b2c3d".into(),
        };
        write(
            "state_apply",
            "ca-rotation",
            &lines(&[
                init_cluster(),
                Command::PutNode(node("n2")),
                Command::PutNode(node("n3")),
                Command::StartCaRotation(rotation.clone()),
                renewed("n1"),
                Command::StartCaRotation(rotation),
                Command::RemoveNode { id: "n3".into() },
                renewed("n2"),
            ]),
        );
        let (_key, csr_pem) = crate::pki::new_key_and_csr().unwrap();
        write("csr", "real", csr_pem.as_bytes());
        let req = JoinRequest {
            secret: "b".repeat(25),
            csr_pem,
            hostname: "worker1".into(),
            addr: "198.18.0.12:2377".into(),
            engine_version: "27.0".into(),
            nano_cpus: 2_000_000_000,
            memory_bytes: 1 << 30,
            gateway_subnet: "198.19.102.0/24".into(),
        };
        write("join_request", "real", &req.encode_to_vec());
    }
}
