//! The real runner's network. With root, each node gets a network
//! namespace of its own (`weir-real-n<id>`), joined to the root namespace
//! by a veth pair whose host end sits on one bridge (`weir-real-br`):
//! node `id` is 10.77.0.<id>, the runner and its clients are 10.77.0.254 in
//! the root namespace. Without namespaces (not root, no `ip`, or
//! `--no-netns`) every node listens on 127.0.0.1 with ports of its own, and
//! partitions cannot be made: the runner says so and skips them.
//!
//! Faults on the wire:
//! - `cut(a, b)`: a blackhole route to every node of `b` inside the
//!   namespace of every node of `a`, and the other way round, so neither
//!   side's packets leave for the other (the kernel discards them at the
//!   route lookup). The clients in the root namespace still reach everyone.
//! - `unplug(i)`: the host end of node i's veth goes down, cutting it from
//!   its peers and from the clients alike, as a pulled cable would.
//!
//! `heal` removes every blackhole and plugs everything back in. Dropping a
//! `Net` deletes the namespaces, veths and bridge; `setup` first deletes
//! any left by an earlier run that died (same names), so two runs on one
//! machine at the same time would trample each other's network.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use crate::props::NodeAddr;

pub const BROKER_PORT: u16 = 9092;
pub const CONTROLLER_PORT: u16 = 9093;
/// The first three octets of every node's address.
const SUBNET: &str = "10.77.0";
/// The runner's own address on the bridge.
const HOST_OCTET: u8 = 254;
const BRIDGE: &str = "weir-real-br";
/// Node names go up to this id when cleaning up (scenario::NODES_MAX).
const NODE_IDS_MAX: usize = crate::scenario::NODES_MAX;

fn ns(i: usize) -> String {
    format!("weir-real-n{}", i + 1)
}

/// Host end of node i's veth pair (interface names are at most 15 bytes).
fn host_veth(i: usize) -> String {
    format!("weir-real-v{}", i + 1)
}

/// Node i's end, named this until it is moved and renamed eth0.
fn node_veth(i: usize) -> String {
    format!("weir-real-p{}", i + 1)
}

fn node_ip(i: usize) -> String {
    format!("{SUBNET}.{}", i + 1)
}

/// Run `ip ARGS`; Err carries the command and its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One active cut: `from`'s namespace holds a blackhole route to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Blackhole {
    from: usize,
    to: usize,
}

pub struct Net {
    nodes: usize,
    mode: Mode,
}

enum Mode {
    Namespaces {
        blackholes: Vec<Blackhole>,
        unplugged: Vec<usize>,
    },
    Loopback {
        /// Why there are no namespaces (printed; partitions are skipped).
        reason: String,
        /// (broker, controller) port of each node.
        ports: Vec<(u16, u16)>,
    },
}

impl Net {
    /// Namespaces when `want_namespaces` and they can be made; otherwise
    /// loopback, with the reason kept for `describe`.
    pub fn setup(nodes: usize, want_namespaces: bool) -> anyhow::Result<Net> {
        let reason = if !want_namespaces {
            Some("namespaces not asked for (--no-netns)".to_string())
        } else if unsafe { libc::geteuid() } != 0 {
            Some("not root: network namespaces need CAP_NET_ADMIN".to_string())
        } else {
            match setup_namespaces(nodes) {
                Ok(()) => None,
                Err(e) => {
                    remove_namespaces();
                    Some(format!("cannot make network namespaces: {e}"))
                }
            }
        };
        let mode = match reason {
            None => Mode::Namespaces {
                blackholes: Vec::new(),
                unplugged: Vec::new(),
            },
            Some(reason) => Mode::Loopback {
                reason,
                ports: free_port_pairs(nodes)?,
            },
        };
        Ok(Net { nodes, mode })
    }

    /// One line for the run's header.
    pub fn describe(&self) -> String {
        match &self.mode {
            Mode::Namespaces { .. } => format!(
                "network namespaces weir-real-n1..n{} on bridge {BRIDGE} ({SUBNET}.1-{}, clients at {SUBNET}.{HOST_OCTET})",
                self.nodes, self.nodes
            ),
            Mode::Loopback { reason, .. } => {
                format!("loopback 127.0.0.1, no network namespaces ({reason}): partitions SKIPPED")
            }
        }
    }

    /// Why partitions cannot run here, if they cannot.
    pub fn partitions_unavailable(&self) -> Option<&str> {
        match &self.mode {
            Mode::Namespaces { .. } => None,
            Mode::Loopback { reason, .. } => Some(reason),
        }
    }

    /// Every node's address, index i for node id i + 1.
    pub fn addrs(&self) -> Vec<NodeAddr> {
        (0..self.nodes)
            .map(|i| match &self.mode {
                Mode::Namespaces { .. } => NodeAddr {
                    host: node_ip(i),
                    broker_port: BROKER_PORT,
                    controller_port: CONTROLLER_PORT,
                },
                Mode::Loopback { ports, .. } => NodeAddr {
                    host: "127.0.0.1".to_string(),
                    broker_port: ports[i].0,
                    controller_port: ports[i].1,
                },
            })
            .collect()
    }

    /// The command that runs `bin` as node i (inside its namespace).
    pub fn command(&self, i: usize, bin: &Path) -> Command {
        match &self.mode {
            Mode::Namespaces { .. } => {
                // `ip netns exec` execs the program: the child's pid is
                // the broker's, so signals reach it directly.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns(i)]).arg(bin);
                c
            }
            Mode::Loopback { .. } => Command::new(bin),
        }
    }

    /// Cut every node of `a` from every node of `b`, both directions.
    pub fn cut(&mut self, a: &[usize], b: &[usize]) -> Result<(), String> {
        let Mode::Namespaces { blackholes, .. } = &mut self.mode else {
            return Err("no network namespaces".to_string());
        };
        for &x in a {
            for &y in b {
                for (from, to) in [(x, y), (y, x)] {
                    let hole = Blackhole { from, to };
                    if blackholes.contains(&hole) {
                        continue;
                    }
                    let dst = format!("{}/32", node_ip(to));
                    ip(&["-n", &ns(from), "route", "add", "blackhole", &dst])?;
                    blackholes.push(hole);
                }
            }
        }
        Ok(())
    }

    /// Cut node i from everyone, the clients included.
    pub fn unplug(&mut self, i: usize) -> Result<(), String> {
        let Mode::Namespaces { unplugged, .. } = &mut self.mode else {
            return Err("no network namespaces".to_string());
        };
        ip(&["link", "set", &host_veth(i), "down"])?;
        if !unplugged.contains(&i) {
            unplugged.push(i);
        }
        Ok(())
    }

    /// Undo every cut and unplug; the errors of what could not be undone.
    pub fn heal(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Mode::Namespaces {
            blackholes,
            unplugged,
        } = &mut self.mode
        {
            for h in blackholes.drain(..) {
                let dst = format!("{}/32", node_ip(h.to));
                if let Err(e) = ip(&["-n", &ns(h.from), "route", "del", "blackhole", &dst]) {
                    errors.push(e);
                }
            }
            for i in unplugged.drain(..) {
                if let Err(e) = ip(&["link", "set", &host_veth(i), "up"]) {
                    errors.push(e);
                }
            }
        }
        errors
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if matches!(self.mode, Mode::Namespaces { .. }) {
            remove_namespaces();
        }
    }
}

fn setup_namespaces(nodes: usize) -> Result<(), String> {
    // Leftovers of a run that died (a kill -9 of the runner skips Drop).
    remove_namespaces();
    let host = format!("{SUBNET}.{HOST_OCTET}/24");
    ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["addr", "add", &host, "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    for i in 0..nodes {
        let (n, hv, nv) = (ns(i), host_veth(i), node_veth(i));
        let addr = format!("{}/24", node_ip(i));
        ip(&["netns", "add", &n])?;
        ip(&["link", "add", &hv, "type", "veth", "peer", "name", &nv])?;
        ip(&["link", "set", &nv, "netns", &n])?;
        ip(&["-n", &n, "link", "set", &nv, "name", "eth0"])?;
        ip(&["-n", &n, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &n, "link", "set", "eth0", "up"])?;
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
        ip(&["link", "set", &hv, "master", BRIDGE])?;
        ip(&["link", "set", &hv, "up"])?;
    }
    Ok(())
}

/// Delete every namespace, veth and bridge of this naming scheme; missing
/// ones are fine. Deleting a namespace takes its end of the veth with it.
fn remove_namespaces() {
    for i in 0..NODE_IDS_MAX {
        let _ = ip(&["netns", "del", &ns(i)]);
        let _ = ip(&["link", "del", &host_veth(i)]);
    }
    let _ = ip(&["link", "del", BRIDGE]);
}

/// (broker, controller) ports for `nodes` loopback nodes, each free when
/// asked (all held at once so no two are the same).
fn free_port_pairs(nodes: usize) -> anyhow::Result<Vec<(u16, u16)>> {
    let listeners: Vec<TcpListener> = (0..nodes * 2)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    Ok(ports.chunks(2).map(|p| (p[0], p[1])).collect())
}
