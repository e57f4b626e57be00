//! What is left of pods' `hostPort`s once their runtime is gone. The CNI portmap plugin writes
//! them into iptables' `nat` table: a chain `CNI-DN-…` per pod, entered from
//! `CNI-HOSTPORT-DNAT` by a rule that names the CNI network, and the chains every portmap user
//! shares (`CNI-HOSTPORT-DNAT`, `-SETMARK`, `-MASQ`) with their jumps from the built-in chains.
//! A pod stopped through its runtime takes its own rules away; a node taken away with its pods
//! still running (`rudder uninstall`) needs [`cleanup`].

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// The chains every portmap user shares.
const SHARED: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

/// The `iptables-restore --noflush` script that takes the `network`'s pods' hostPort rules out
/// of the `nat` table that `save` (`iptables-save -t nat`) shows; the shared chains go too when
/// no other network's pods are left in them. `None`: nothing to take away.
pub fn plan(save: &str, network: &str) -> Option<String> {
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

/// Takes the `network`'s hostPort rules away, for IPv4 and IPv6. A table that iptables made in
/// nftables and that holds nothing afterwards goes too, so a machine without iptables rules
/// before the node came is left without them. No iptables on the machine is no error: then
/// the plugin could not have written any.
pub async fn cleanup(network: &str) -> std::io::Result<()> {
    for (save, restore, family) in [
        ("iptables-save", "iptables-restore", "ip"),
        ("ip6tables-save", "ip6tables-restore", "ip6"),
    ] {
        let Some(before) = output(save, &["-t", "nat"]).await? else {
            continue;
        };
        if let Some(script) = plan(&before, network) {
            let mut child = tokio::process::Command::new(restore)
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
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "{restore}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let after = output(save, &["-t", "nat"]).await?.unwrap_or_default();
        if holds_nothing(&after) && after.contains("(nf_tables)") {
            let _ = output("nft", &["delete", "table", family, "nat"]).await;
        }
    }
    Ok(())
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
            plan(&save(&[OURS, THEIRS]), "rudder").unwrap(),
            format!("*nat\n{ours}\n-F CNI-DN-e72f\n-X CNI-DN-e72f\nCOMMIT\n")
        );
        assert_eq!(
            plan(&save(&[OURS]), "rudder").unwrap(),
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
        assert_eq!(plan(&save(&[THEIRS]), "rudder"), None);
        // A table without portmap's chains is left alone.
        let bare = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [3:180]\nCOMMIT\n";
        assert_eq!(plan(bare, "rudder"), None);
        assert!(holds_nothing(bare));
        assert!(!holds_nothing(&save(&[])));
        assert!(!holds_nothing("*nat\n:PREROUTING DROP [0:0]\nCOMMIT\n"));
        assert!(!holds_nothing(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j RETURN\n"
        ));
    }
}
