//! Hosts as Linux network namespaces on one private /24: a "switch" namespace holds a bridge, every host
//! namespace is joined to it by a veth pair (`eth0` in the host), and the root namespace (where the test
//! runs: the operator's host, `.1`) has a veth leg on it too. Names are `ringcast-fleet-<pid>-<host>`
//! (the root leg `rcf<pid>`), so a crashed run never collides with the next one, which removes the stale
//! namespaces of runs whose PID is gone. Dropping [`Net`] SIGKILLs whatever still runs in its namespaces
//! (all of it started by this test) and deletes them; deleting the switch deletes every veth pair.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use crate::common::{alive, kill_pid};

const PREFIX: &str = "ringcast-fleet-";

/// `ip <args>`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces `ip netns list` names.
fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect()
    })
    .unwrap_or_default()
}

/// SIGKILL every process in namespace `ns`, then delete it.
fn remove(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                kill_pid(pid, 9);
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// Remove what earlier runs left behind: namespaces `ringcast-fleet-<pid>-*` whose PID no longer runs.
fn remove_stale() {
    for ns in namespaces() {
        let Some(pid) = ns
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) {
            println!("fleet_netns: removing {ns}, left by run {pid}");
            remove(&ns);
            let _ = Command::new("ip")
                .args(["link", "del", &format!("rcf{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The private network and its hosts; everything removed on drop.
pub struct Net {
    pid: u32,
    /// The first three octets of the /24.
    net: [u8; 3],
    /// Host namespaces, then the switch last (deleted last).
    hosts: Vec<String>,
}

impl Net {
    /// The switch and the root namespace's leg (`.1`).
    pub fn new() -> Net {
        remove_stale();
        let pid = std::process::id();
        // 10.77.N.0/24 with N from the PID: two concurrent runs do not share a route.
        let net = [10, 77, (pid % 250) as u8 + 1];
        let mut n = Net {
            pid,
            net,
            hosts: Vec::new(),
        };
        let sw = n.ns("sw");
        ip(&["netns", "add", &sw]);
        n.hosts.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let leg = format!("rcf{pid}");
        ip(&[
            "link", "add", &leg, "type", "veth", "peer", "name", "vroot", "netns", &sw,
        ]);
        ip(&["-n", &sw, "link", "set", "vroot", "master", "br0", "up"]);
        let cidr = format!("{}/24", n.addr(1));
        ip(&["addr", "add", &cidr, "dev", &leg]);
        ip(&["link", "set", &leg, "up"]);
        n
    }

    fn ns(&self, host: &str) -> String {
        format!("{PREFIX}{}-{host}", self.pid)
    }

    /// The address `.last` of the network.
    pub fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], last)
    }

    /// A new host namespace `host` with address `.last` on `eth0`; its namespace name.
    pub fn host(&mut self, host: &str, last: u8) -> String {
        let ns = self.ns(host);
        let sw = self.ns("sw");
        ip(&["netns", "add", &ns]);
        self.hosts.insert(0, ns.clone());
        let port = format!("v{host}");
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        let cidr = format!("{}/24", self.addr(last));
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.hosts {
            remove(ns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("rcf{}", self.pid)])
            .stderr(Stdio::null())
            .status();
    }
}

/// `ip netns exec <ns> <program>`: `ip` execs the program in the namespace, so the child's PID is the
/// program's.
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program])
        .stdin(Stdio::null());
    cmd
}

/// A child process SIGKILLed (by PID) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
