//! What Rudder does in iptables, which the machine's firewall and the CNI portmap plugin use,
//! beside its own nftables tables:
//!
//! - **Forwarding past a firewall.** A `filter` table whose `FORWARD` chain drops what it does
//!   not know (Docker sets its policy to DROP; ufw and firewalld do the like) would drop pods'
//!   traffic between nodes and Service traffic sent on to other nodes, and no rule of another
//!   table can overrule a drop. Where such a table is in use, [`allow_forwarding`] puts a chain
//!   `RUDDER-FORWARD` first in `FORWARD`, accepting what comes from or goes to the pods and
//!   what the proxy DNATed, as flannel and kube-proxy do. A machine without the table is left
//!   without it.
//! - **hostPorts that outlived their runtime.** The portmap plugin writes pods' `hostPort`s
//!   into the `nat` table: a chain `CNI-DN-…` per pod, entered from `CNI-HOSTPORT-DNAT` by a
//!   rule that names the CNI network, and the chains every portmap user shares
//!   (`CNI-HOSTPORT-DNAT`, `-SETMARK`, `-MASQ`) with their jumps from the built-in chains. A pod
//!   stopped through its runtime takes its own rules away; a node taken away with its pods
//!   still running (`rudder uninstall`) needs [`cleanup_hostports`].
//!
//! Every change is one `iptables-restore --noflush` transaction.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// Rudder's chain in the `filter` table.
pub const FORWARD_CHAIN: &str = "RUDDER-FORWARD";

/// The `iptables-restore --noflush` script that makes [`FORWARD_CHAIN`] accept the pods at
/// `cidrs` and DNATed traffic, first in `FORWARD`, for the `filter` table `save`
/// (`iptables-save -t filter`) shows; `None` if its `FORWARD` has neither rules nor a policy
/// but ACCEPT (nothing to get past), or it is so already.
pub fn forward_script(save: &str, cidrs: &BTreeSet<(Ipv4Addr, u8)>) -> Option<String> {
    // iptables-save shows the built-in chains of a table that is not there, accepting.
    let in_use = save.lines().any(|l| {
        (l.starts_with(":FORWARD ") && !l.starts_with(":FORWARD ACCEPT"))
            || l.starts_with("-A FORWARD ")
    });
    if !in_use {
        return None;
    }
    let mut rules = Vec::new();
    for (addr, len) in cidrs {
        for dir in ["-s", "-d"] {
            rules.push(format!(
                "-A {FORWARD_CHAIN} {dir} {addr}/{len} -m comment --comment \"rudder: pods\" -j ACCEPT"
            ));
        }
    }
    rules.push(format!(
        "-A {FORWARD_CHAIN} -m conntrack --ctstate DNAT -m comment --comment \"rudder: services\" -j ACCEPT"
    ));
    let jump = format!("-j {FORWARD_CHAIN}");
    let jumped = save
        .lines()
        .any(|l| l.starts_with("-A FORWARD ") && l.ends_with(&jump));
    let now: Vec<&str> = save
        .lines()
        .filter(|l| l.starts_with(&format!("-A {FORWARD_CHAIN} ")))
        .collect();
    if jumped && now == rules {
        return None;
    }
    // Declaring the chain empties it; the jump goes in once.
    let mut script = format!("*filter\n:{FORWARD_CHAIN} - [0:0]\n");
    for rule in rules {
        script.push_str(&rule);
        script.push('\n');
    }
    if !jumped {
        script.push_str(&format!(
            "-I FORWARD 1 -m comment --comment \"rudder: pods and services\" {jump}\n"
        ));
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// The script that takes [`FORWARD_CHAIN`] and the jumps to it out of the `filter` table
/// `save` shows; `None` if it is not there.
pub fn forward_cleanup_script(save: &str) -> Option<String> {
    if !save
        .lines()
        .any(|l| l.starts_with(&format!(":{FORWARD_CHAIN} ")))
    {
        return None;
    }
    let jump = format!("-j {FORWARD_CHAIN}");
    let mut script = String::from("*filter\n");
    for l in save
        .lines()
        .filter(|l| l.starts_with("-A ") && l.ends_with(&jump))
    {
        script.push_str(&format!("-D {}\n", &l[3..]));
    }
    script.push_str(&format!("-F {FORWARD_CHAIN}\n-X {FORWARD_CHAIN}\nCOMMIT\n"));
    Some(script)
}

/// Keeps pods' and Services' traffic past the `filter` table's `FORWARD` chain, if the
/// machine has one ([`forward_script`]).
pub async fn allow_forwarding(cidrs: &BTreeSet<(Ipv4Addr, u8)>) -> std::io::Result<()> {
    let Some(save) = output("iptables-save", &["-t", "filter"]).await? else {
        return Ok(());
    };
    match forward_script(&save, cidrs) {
        Some(script) => restore("iptables-restore", &script).await,
        None => Ok(()),
    }
}

/// Takes [`FORWARD_CHAIN`] away ([`forward_cleanup_script`]).
pub async fn cleanup_forwarding() -> std::io::Result<()> {
    let Some(save) = output("iptables-save", &["-t", "filter"]).await? else {
        return Ok(());
    };
    match forward_cleanup_script(&save) {
        Some(script) => restore("iptables-restore", &script).await,
        None => Ok(()),
    }
}

/// The chains every portmap user shares.
const SHARED: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

/// The `iptables-restore --noflush` script that takes the `network`'s pods' hostPort rules out
/// of the `nat` table that `save` (`iptables-save -t nat`) shows; the shared chains go too when
/// no other network's pods are left in them. `None`: nothing to take away.
pub fn hostports_script(save: &str, network: &str) -> Option<String> {
    let rules: Vec<&str> = save.lines().filter(|l| l.starts_with("-A ")).collect();
    let chain_of = |rule: &str| {
        rule.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let target = |rule: &str| {
        let mut words = rule.split_whitespace();
        words.by_ref().find(|w| *w == "-j");
        words.next().unwrap_or_default().to_string()
    };
    let marker = format!("--comment \"dnat name: \\\"{network}\\\" ");
    let entry = |rule: &&str| chain_of(rule) == SHARED[0] && target(rule).starts_with("CNI-DN-");
    let (ours, others): (Vec<&str>, Vec<&str>) = rules
        .iter()
        .copied()
        .filter(entry)
        .partition(|r| r.contains(&marker));
    let mut chains: Vec<String> = ours.iter().map(|r| target(r)).collect();
    chains.sort();
    chains.dedup();
    let mut deleted: Vec<&str> = ours.clone();
    if others.is_empty()
        && save
            .lines()
            .any(|l| l.starts_with(&format!(":{}", SHARED[0])))
    {
        // Nothing but ours in the shared chains: they and the jumps to them go as well.
        deleted.extend(rules.iter().copied().filter(|r| {
            !SHARED.contains(&chain_of(r).as_str())
                && !chains.contains(&chain_of(r))
                && SHARED.contains(&target(r).as_str())
        }));
        chains.extend(
            SHARED
                .iter()
                .filter(|c| save.lines().any(|l| l.starts_with(&format!(":{c} "))))
                .map(|c| c.to_string()),
        );
    }
    if deleted.is_empty() && chains.is_empty() {
        return None;
    }
    let mut script = String::from("*nat\n");
    for rule in deleted {
        script.push_str(&format!("-D {}\n", &rule[3..]));
    }
    for chain in &chains {
        script.push_str(&format!("-F {chain}\n"));
    }
    for chain in &chains {
        script.push_str(&format!("-X {chain}\n"));
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// Takes the `network`'s hostPort rules away ([`hostports_script`]), for IPv4 and IPv6. A
/// table that iptables made in nftables and that holds nothing afterwards goes too, so a
/// machine without iptables rules before the node came is left without them. No iptables on
/// the machine is no error: then the plugin could not have written any.
pub async fn cleanup_hostports(network: &str) -> std::io::Result<()> {
    for (save, restorer, family) in [
        ("iptables-save", "iptables-restore", "ip"),
        ("ip6tables-save", "ip6tables-restore", "ip6"),
    ] {
        let Some(before) = output(save, &["-t", "nat"]).await? else {
            continue;
        };
        if let Some(script) = hostports_script(&before, network) {
            restore(restorer, &script).await?;
        }
        let after = output(save, &["-t", "nat"]).await?.unwrap_or_default();
        if holds_nothing(&after) && after.contains("(nf_tables)") {
            let _ = output("nft", &["delete", "table", family, "nat"]).await;
        }
    }
    Ok(())
}

/// Runs `program --noflush` (`iptables-restore` or `ip6tables-restore`) on `script`.
async fn restore(program: &str, script: &str) -> std::io::Result<()> {
    let mut child = tokio::process::Command::new(program)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Whether the `nat` table that `save` shows has no rules, no chains but its own and no
/// policy but ACCEPT: whether it does the same as no table at all.
fn holds_nothing(save: &str) -> bool {
    save.lines().all(|l| {
        let mut words = l.split_whitespace();
        match words.next() {
            Some(chain) if chain.starts_with(':') => {
                ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"].contains(&&chain[1..])
                    && words.next() == Some("ACCEPT")
            }
            _ => !l.starts_with('-'),
        }
    })
}

/// What `program args` prints, if it could be run (`None`: not installed) and succeeded.
async fn output(program: &str, args: &[&str]) -> std::io::Result<Option<String>> {
    let out = match tokio::process::Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"rudder\" id: \"d5c5\"" -m multiport --dports 9091 -j CNI-DN-e72f"#;
    const THEIRS: &str = r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"podman\" id: \"77\"" -m multiport --dports 80 -j CNI-DN-aaaa"#;

    fn save(entries: &[&str]) -> String {
        let mut s = String::from(
            "# Generated by iptables-save v1.8.9 (nf_tables)\n*nat\n\
             :PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :POSTROUTING ACCEPT [0:0]\n:CNI-DN-e72f - [0:0]\n:CNI-DN-aaaa - [0:0]\n\
             :CNI-HOSTPORT-DNAT - [0:0]\n:CNI-HOSTPORT-MASQ - [0:0]\n\
             :CNI-HOSTPORT-SETMARK - [0:0]\n:DOCKER - [0:0]\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
             -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
             -A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ\n\
             -A CNI-DN-e72f -s 10.42.0.0/24 -p tcp -m tcp --dport 9091 -j CNI-HOSTPORT-SETMARK\n\
             -A CNI-DN-e72f -p tcp -m tcp --dport 9091 -j DNAT --to-destination 10.42.0.2:80\n\
             -A CNI-DN-aaaa -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.88.0.2:80\n\
             -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE\n\
             -A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000\n",
        );
        for e in entries {
            s.push_str(e);
            s.push('\n');
        }
        s.push_str("COMMIT\n");
        s
    }

    #[test]
    fn only_the_networks_own_pods_go_and_shared_chains_with_the_last_of_them() {
        let ours = OURS.replacen("-A", "-D", 1);
        assert_eq!(
            hostports_script(&save(&[OURS, THEIRS]), "rudder").unwrap(),
            format!("*nat\n{ours}\n-F CNI-DN-e72f\n-X CNI-DN-e72f\nCOMMIT\n")
        );
        assert_eq!(
            hostports_script(&save(&[OURS]), "rudder").unwrap(),
            format!(
                "*nat\n{ours}\n\
                 -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
                 -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
                 -D POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ\n\
                 -F CNI-DN-e72f\n-F CNI-HOSTPORT-DNAT\n-F CNI-HOSTPORT-SETMARK\n-F CNI-HOSTPORT-MASQ\n\
                 -X CNI-DN-e72f\n-X CNI-HOSTPORT-DNAT\n-X CNI-HOSTPORT-SETMARK\n-X CNI-HOSTPORT-MASQ\n\
                 COMMIT\n"
            )
        );
        // Another network's pods keep everything of theirs.
        assert_eq!(hostports_script(&save(&[THEIRS]), "rudder"), None);
        // A table without portmap's chains is left alone.
        let bare = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [3:180]\nCOMMIT\n";
        assert_eq!(hostports_script(bare, "rudder"), None);
        assert!(holds_nothing(bare));
        assert!(!holds_nothing(&save(&[])));
        assert!(!holds_nothing("*nat\n:PREROUTING DROP [0:0]\nCOMMIT\n"));
        assert!(!holds_nothing(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j RETURN\n"
        ));
    }

    fn cidrs() -> BTreeSet<(Ipv4Addr, u8)> {
        [([10, 42, 0, 0].into(), 24), ([10, 42, 1, 0].into(), 24)]
            .into_iter()
            .collect()
    }

    #[test]
    fn forwarding_is_allowed_only_where_a_filter_table_is_in_use() {
        assert_eq!(forward_script("", &cidrs()), None);
        let open = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(forward_script(open, &cidrs()), None);
        let rejecting = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j REJECT\nCOMMIT\n";
        assert!(forward_script(rejecting, &cidrs()).is_some());
        assert_eq!(
            forward_script("*nat\n:PREROUTING ACCEPT [0:0]\n", &cidrs()),
            None
        );
        let docker = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n\
                      -A FORWARD -j DOCKER-USER\nCOMMIT\n";
        let script = forward_script(docker, &cidrs()).unwrap();
        assert!(
            script.starts_with("*filter\n:RUDDER-FORWARD - [0:0]\n"),
            "{script}"
        );
        assert!(script.contains("-A RUDDER-FORWARD -d 10.42.1.0/24 -m comment --comment \"rudder: pods\" -j ACCEPT\n"), "{script}");
        assert!(script.contains("-I FORWARD 1 "), "{script}");
        assert_eq!(forward_cleanup_script(docker), None);
    }

    /// Against the real iptables, in a network namespace of the test's: the rules go in once
    /// (what iptables-save shows again is what was written) and come out whole.
    #[test]
    fn forwarding_rules_go_in_once_and_come_out_whole() {
        let cmd = |program: &str, args: &[&str]| {
            let out = std::process::Command::new(program)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{program} {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let (first, second, after, cleaned) = std::thread::spawn(move || {
            // SAFETY: unshare(2) moves only this thread into a new network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            cmd("iptables", &["-P", "FORWARD", "DROP"]);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(allow_forwarding(&cidrs())).unwrap();
            let first = cmd("iptables-save", &["-t", "filter"]);
            rt.block_on(allow_forwarding(&cidrs())).unwrap();
            let second = cmd("iptables-save", &["-t", "filter"]);
            let after = forward_script(&second, &cidrs());
            rt.block_on(cleanup_forwarding()).unwrap();
            (
                first,
                second,
                after,
                cmd("iptables-save", &["-t", "filter"]),
            )
        })
        .join()
        .unwrap();
        let rules = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.starts_with("-A"))
                .map(String::from)
                .collect()
        };
        assert_eq!(rules(&first).len(), 6, "{first}");
        assert!(
            first.contains(
                "-A FORWARD -m comment --comment \"rudder: pods and services\" -j RUDDER-FORWARD"
            ),
            "{first}"
        );
        assert_eq!(rules(&first), rules(&second));
        assert_eq!(after, None, "nothing to change the second time");
        assert!(!cleaned.contains("RUDDER"), "{cleaned}");
        assert!(cleaned.contains(":FORWARD DROP"), "{cleaned}");
    }
}
