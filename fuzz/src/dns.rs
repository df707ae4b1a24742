//! DNS queries, sent as datagrams to a real listener of the embedded server
//! (on loopback, once per process, with no upstreams so that nothing leaves
//! the machine). After each input a well-formed probe must still be
//! answered rightly, so a listener that died or wedged fails at once; every
//! reply must decode; and a plain A query for a cluster name must be
//! answered with exactly that name's addresses.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::OnceLock;
use std::time::Duration;
use swarm_dns::{Listener, Names, Resolver};

const NETWORK: &str = "net1";

fn names() -> Names {
    let a = |s: &str| s.parse::<Ipv4Addr>().expect("an address");
    Names::new([
        (NETWORK.into(), "web".into(), vec![a("10.0.1.2")]),
        (
            NETWORK.into(),
            "tasks.web".into(),
            vec![a("10.0.1.5"), a("10.0.1.6")],
        ),
        ("other".into(), "hidden".into(), vec![a("10.0.9.9")]),
    ])
}

struct Server {
    names: Names,
    client: UdpSocket,
    _listener: Listener,
    _resolver: Resolver,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let resolver = Resolver::new(Vec::new()).expect("starting the DNS thread");
        let names = names();
        resolver.set_names(names.clone());
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
        socket.set_nonblocking(true).expect("a non-blocking socket");
        let addr = socket.local_addr().expect("its address");
        let listener = resolver
            .serve(socket, vec![NETWORK.into()])
            .expect("serving on it");
        let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
        client.connect(addr).expect("connecting to the listener");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        Server {
            names,
            client,
            _listener: listener,
            _resolver: resolver,
        }
    })
}

/// The A addresses of a reply's answers, sorted.
fn addresses(reply: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// What a query for a cluster name must get: the name's addresses, when
/// the query is a plain one-question A query that the server can read.
fn expected(names: &Names, query: &Message) -> Option<Vec<Ipv4Addr>> {
    if query.metadata.message_type != MessageType::Query
        || query.metadata.op_code != OpCode::Query
        || query.queries.len() != 1
        || query.queries[0].query_type() != RecordType::A
    {
        return None;
    }
    let mut found = names.lookup(&[NETWORK.into()], &query.queries[0].name().to_string())?;
    found.sort();
    Some(found)
}

pub fn query(data: &[u8]) {
    if data.len() > 512 {
        return;
    }
    let server = server();
    let fuzz_id = (data.len() >= 2).then(|| u16::from_be_bytes([data[0], data[1]]));
    let probe_id = if fuzz_id == Some(0x5157) {
        0x5158
    } else {
        0x5157
    };
    let mut probe = Message::new(probe_id, MessageType::Query, OpCode::Query);
    probe.add_query(Query::query(
        Name::from_ascii("tasks.web.").expect("a name"),
        RecordType::A,
    ));
    let probe_bytes = probe.to_vec().expect("the probe encodes");
    server.client.send(data).expect("sending the input");
    server.client.send(&probe_bytes).expect("sending the probe");
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = server
            .client
            .recv(&mut buf)
            .expect("the listener stopped answering (no reply to the probe)");
        let reply = Message::from_vec(&buf[..n])
            .unwrap_or_else(|e| panic!("the listener sent a reply that does not decode: {e}"));
        if reply.metadata.id == probe_id {
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert_eq!(
                addresses(&reply),
                vec![Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)],
                "the probe was answered wrongly"
            );
            return;
        }
        assert_eq!(Some(reply.metadata.id), fuzz_id, "a reply to no query");
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        if let (Ok(q), ResponseCode::NoError) =
            (Message::from_vec(data), reply.metadata.response_code)
        {
            if let Some(want) = expected(&server.names, &q) {
                assert_eq!(addresses(&reply), want, "a cluster name answered wrongly");
            }
        }
    }
}
