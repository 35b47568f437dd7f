//! Each node's server.properties, from the scenario: the simulator applies
//! them to a `ServerConfig` (`crate::cluster`), the real-process runner
//! writes them to the file `weir server --config` reads (`crate::real`).
//! One list, so both run the cluster the scenario describes.

use crate::scenario::Scenario;

/// Where one node listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    /// IP address or host name clients and peers reach the node at.
    pub host: String,
    pub broker_port: u16,
    /// The controller listener of a voter (raft messages and broker RPCs).
    pub controller_port: u16,
}

/// Harness defaults for a multi-node cluster, before the scenario's own
/// properties: failure detection scaled to runs of tens of seconds (Kafka's
/// defaults would spend a whole short run noticing one dead broker), and
/// internal topics replicated like the workload's.
pub const CLUSTER_DEFAULTS: &[(&str, &str)] = &[
    ("broker.heartbeat.interval.ms", "500"),
    ("broker.session.timeout.ms", "3000"),
    ("replica.lag.time.max.ms", "3000"),
    ("replica.fetch.wait.max.ms", "200"),
    ("replica.socket.timeout.ms", "2000"),
    ("offsets.topic.replication.factor", "3"),
];

/// The properties of node `i` (node id i + 1), in the order they apply (a
/// later one wins): identity and listeners, the quorum, `CLUSTER_DEFAULTS`,
/// the scenario's `[cluster] broker` and its per-node overrides. `nodes`
/// has every node's address, index i for node id i + 1.
pub fn node_properties(
    s: &Scenario,
    i: usize,
    nodes: &[NodeAddr],
    data_dir: &str,
) -> Vec<(String, String)> {
    assert!(
        nodes.len() == s.cluster.nodes,
        "one address per node of the scenario"
    );
    let mut p: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| p.push((k.to_string(), v.to_string()));
    let id = i as i32 + 1;
    let me = &nodes[i];
    let voters = s.cluster.voter_ids();
    set("node.id", &id.to_string());
    set("log.dirs", data_dir);
    set("auto.create.topics.enable", "false");
    let plaintext = format!("PLAINTEXT://{}:{}", me.host, me.broker_port);
    if voters.is_empty() {
        // Single-node mode: the node is its own one-voter quorum.
        set("listeners", &plaintext);
    } else {
        let is_voter = voters.contains(&id);
        let listeners = if is_voter {
            format!(
                "{plaintext},CONTROLLER://{}:{}",
                me.host, me.controller_port
            )
        } else {
            plaintext
        };
        set("listeners", &listeners);
        set("controller.listener.names", "CONTROLLER");
        let roles = if is_voter {
            "broker,controller"
        } else {
            "broker"
        };
        set("process.roles", roles);
        let quorum: Vec<String> = voters
            .iter()
            .map(|v| {
                let n = &nodes[*v as usize - 1];
                format!("{v}@{}:{}", n.host, n.controller_port)
            })
            .collect();
        set("controller.quorum.voters", &quorum.join(","));
        for (k, v) in CLUSTER_DEFAULTS {
            set(k, v);
        }
    }
    for (k, v) in &s.cluster.broker {
        set(k, v);
    }
    if let Some(over) = s.cluster.node.get(&id) {
        for (k, v) in over {
            set(k, v);
        }
    }
    p
}

/// `key=value` lines, as server.properties holds them.
pub fn to_properties_text(props: &[(String, String)]) -> String {
    props.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<NodeAddr> {
        (0..n)
            .map(|j| NodeAddr {
                host: format!("10.77.0.{}", j + 1),
                broker_port: 9092,
                controller_port: 9093,
            })
            .collect()
    }

    #[test]
    fn a_three_node_cluster_names_its_quorum_and_later_properties_win() {
        let s = Scenario::parse(
            "name = \"x\"\n[cluster]\nnodes = 3\nbroker = { \"broker.session.timeout.ms\" = \"6000\" }\n[topic]\nreplication_factor = 3",
        )
        .unwrap();
        let p = node_properties(&s, 1, &addrs(3), "/d");
        let text = to_properties_text(&p);
        assert!(text.starts_with("node.id=2\nlog.dirs=/d\n"), "{text}");
        assert!(text.contains("listeners=PLAINTEXT://10.77.0.2:9092,CONTROLLER://10.77.0.2:9093\n"));
        assert!(text.contains(
            "controller.quorum.voters=1@10.77.0.1:9093,2@10.77.0.2:9093,3@10.77.0.3:9093\n"
        ));
        let sessions: Vec<&str> = p
            .iter()
            .filter(|(k, _)| k == "broker.session.timeout.ms")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            sessions,
            ["3000", "6000"],
            "the scenario's value comes last"
        );
        // The result parses as the broker itself would read it.
        let cfg = weir::config::ServerConfig::parse_properties(&text).unwrap();
        assert_eq!(cfg.node_id, 2);
    }

    #[test]
    fn one_node_has_no_quorum() {
        let s = Scenario::parse("name = \"x\"").unwrap();
        let text = to_properties_text(&node_properties(&s, 0, &addrs(1), "/d"));
        assert!(!text.contains("controller"), "{text}");
    }
}
